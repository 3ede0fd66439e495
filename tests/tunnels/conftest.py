import pytest


@pytest.fixture
def synced(cloudflare_sim, db, settings):
    """The demo account after one full sync pass (one pass per budget window, so it may spend it all)."""
    from tunnels import sync

    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    sync.sync_pass()
    return cloudflare_sim


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Post a change form and let its Celery task run (eagerly) when the request's transaction commits."""

    def post(client, url, data):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data)

    return post
