import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.test import Client

from dashboard.models import User
from tests.factories import make_user

# Every process a test starts inherits this mark in its environment, so the session can find any left running.
SESSION_MARK = "GATEHOUSE_TEST_SESSION"


def pytest_sessionstart(session):
    os.environ[SESSION_MARK] = uuid.uuid4().hex


def marked_processes() -> dict[int, str]:
    """Processes (other than this one) whose environment carries this session's mark, with their command lines."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            continue
    return found


def pytest_sessionfinish(session, exitstatus):
    """The suite fails if a process a test started is still running once every test is done (after a grace for
    those that are on their way out); such processes are killed."""
    if SESSION_MARK not in os.environ or not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + 10
    while (left := marked_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not left:
        return
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    lines = "\n".join(f"  {pid}: {cmdline}" for pid, cmdline in sorted(left.items()))
    session.config.get_terminal_writer().line(f"\nProcesses started by tests were still running:\n{lines}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def viewer(db):
    return make_user(role=User.Role.VIEWER, email="viewer@example.com")


@pytest.fixture
def operator(db):
    return make_user(role=User.Role.OPERATOR, email="operator@example.com")


@pytest.fixture
def admin(db):
    return make_user(role=User.Role.ADMIN, email="admin@example.com")


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer_client(viewer):
    return _client_for(viewer)


@pytest.fixture
def operator_client(operator):
    return _client_for(operator)


@pytest.fixture
def admin_client(admin):
    return _client_for(admin)


@pytest.fixture
def htmx_headers():
    return {"HX-Request": "true"}


class SimulatedCloudflare:
    """The Cloudflare simulator on a loopback port, seeded with the demo account; Gatehouse points at it."""

    def __init__(self, app, server, summary):
        self.app, self.server, self.summary = app, server, summary
        self.store = app.store
        self.account_id = summary["account_id"]
        self.url = f"http://127.0.0.1:{server.server_port}/client/v4"

    def stats(self) -> dict:
        return self.store.stats()

    def calls(self) -> int:
        return self.stats()["total"]


@pytest.fixture
def cloudflare_sim(tmp_path, settings):
    import threading
    import time
    import uuid

    from cloudflare_sim.app import make_app
    from cloudflare_sim.seed import seed_demo
    from cloudflare_sim.server import make_http_server
    from integrations import cloudflare as cf

    token = "gatehouse-test-token"
    app = make_app(str(tmp_path / "cloudflare.sqlite3"), token, seed=7)
    summary = seed_demo(app.store, time.time(), seed=1)
    server = make_http_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sim = SimulatedCloudflare(app, server, summary)
    settings.CLOUDFLARE_API_TOKEN = token
    settings.CLOUDFLARE_ACCOUNT_ID = sim.account_id
    settings.CLOUDFLARE_BASE_URL = sim.url
    settings.VAR_DIR = tmp_path
    settings.GATEHOUSE_CLOUDFLARE_BUDGET_NAME = f"test-{uuid.uuid4().hex}"
    cf._client.cache_clear()
    yield sim
    server.shutdown()
    server.server_close()
    cf._client.cache_clear()


def free_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def celery_broker():
    """Celery as production runs it (tasks go to a broker, not run in place), on a broker URL the test sets with
    `use(url)`; the app's connections are closed on each change, so no pooled connection to another broker lingers."""
    from dashboard.celery import app

    saved = app.conf.broker_url, app.conf.task_always_eager

    def forget_connections():
        # As tests/vendors/test_worker.py does: the pools hold connections to the broker they were made for.
        app.amqp._producer_pool = None
        app._pool = None

    def use(url: str) -> str:
        forget_connections()
        app.conf.broker_url = url
        app.conf.task_always_eager = False
        return url

    yield use
    forget_connections()
    app.conf.broker_url, app.conf.task_always_eager = saved


@pytest.fixture
def broker_down(celery_broker):
    """A Redis broker that is down: nothing listens on its port. The URL carries a password, as production's does."""
    return celery_broker(f"redis://:s3cret-broker-password@127.0.0.1:{free_port()}/0")


@pytest.fixture
def silent_port():
    """A loopback TCP listener that accepts connections and never answers (a dependency that hangs), in a thread of
    the test; its port."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()
