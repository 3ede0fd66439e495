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
