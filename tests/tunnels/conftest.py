import pytest


@pytest.fixture
def synced(cloudflare_sim, db):
    """The demo account after one full sync pass."""
    from tunnels import sync

    sync.sync_pass()
    return cloudflare_sim
