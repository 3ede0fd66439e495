"""The simulator mounted in-process on httpx.WSGITransport, driven through the official SDK."""

from __future__ import annotations

import cloudflare
import httpx
import pytest

from cloudflare_sim.app import make_app
from cloudflare_sim.seed import seed_demo

TOKEN = "sim-test-token"
BASE_URL = "http://sim.test/client/v4"


class FakeClock:
    """Time that only moves when a test says so, so windows and expiries need no sleeping."""

    def __init__(self, start: float = 1_790_000_000.0):
        self.now = start
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def sdk_client(app, token: str = TOKEN) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(
        api_token=token,
        base_url=BASE_URL,
        http_client=httpx.Client(transport=httpx.WSGITransport(app=app)),
        max_retries=0,
        _strict_response_validation=True,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(tmp_path, clock):
    return make_app(str(tmp_path / "state.sqlite3"), TOKEN, clock=clock, sleep=clock.sleep, seed=7)


@pytest.fixture
def demo(app, clock) -> dict:
    return seed_demo(app.store, clock(), seed=1)


@pytest.fixture
def cf(app, monkeypatch) -> cloudflare.Cloudflare:
    # The SDK prefers e-mail/key auth when CLOUDFLARE_EMAIL is set, which would hide the bearer token.
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_USER_SERVICE_KEY"):
        monkeypatch.delenv(name, raising=False)
    return sdk_client(app)


@pytest.fixture
def account_id(demo) -> str:
    return demo["account_id"]
