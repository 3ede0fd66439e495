import pytest


@pytest.fixture
def synced(cloudflare_sim, db, settings):
    """The demo account after one full sync pass (one pass per budget window, so it may spend it all)."""
    from tunnels import sync

    settings.GATEHOUSE_TUNNEL_SYNC_SECONDS = 300
    sync.sync_pass()
    return cloudflare_sim
