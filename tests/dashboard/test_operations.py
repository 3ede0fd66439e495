from dashboard.operations import retry_countdown


def test_retry_countdown_doubles_from_the_first_wait_up_to_the_cap():
    waits = [retry_countdown(retries=n, retry_after=None, first=1.0, cap=10.0) for n in range(6)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_retry_countdown_waits_as_long_as_cloudflare_asks_when_that_is_longer():
    assert retry_countdown(retries=0, retry_after=30.0, cap=10.0) == 30.0
    assert retry_countdown(retries=3, retry_after=2.0, first=4.0) == 32.0
