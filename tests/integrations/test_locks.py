"""Locks around a read-modify-write at Cloudflare: one holder at a time, across threads and processes."""

import threading
import time

import pytest

from integrations import locks


def test_a_second_holder_waits_for_the_first_and_gives_up_after_its_wait(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.VAR_DIR = tmp_path
    order = []
    inside = threading.Event()

    def first():
        with locks.hold("access-app:a"):
            inside.set()
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    inside.wait(5)
    with pytest.raises(locks.LockTimeout), locks.hold("access-app:a", wait=0.05):
        order.append("too early")
    # Another object's lock is free meanwhile.
    with locks.hold("access-app:b", wait=0.05):
        order.append("other object")
    with locks.hold("access-app:a", wait=5):
        order.append("second in")
    thread.join()
    assert order == ["other object", "first out", "second in"]


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_the_generation_counts_changes_made_under_the_lock(settings, tmp_path, backend, request):
    import uuid

    from tests.workers import redis_url

    settings.VAR_DIR = tmp_path
    settings.REDIS_URL = redis_url() if backend == "redis" else ""
    name = f"access-app:{uuid.uuid4()}"
    if backend == "redis":
        request.addfinalizer(lambda: locks._redis(settings.REDIS_URL).delete(f"gatehouse:lock:{name}:generation"))
    assert locks.generation(name) == 0
    with locks.hold(name) as held:
        assert held.generation == 0
    # Holding the lock without changing anything leaves the generation as it was.
    assert locks.generation(name) == 0
    with locks.hold(name) as held:
        held.changed()
    assert locks.generation(name) == 1
    with locks.hold(name) as held:
        assert held.generation == 1
        held.changed()
    assert locks.generation(name) == 2
