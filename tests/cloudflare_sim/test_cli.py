"""The command line and the `serve` code path: a real HTTP server on a loopback port."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading

import cloudflare
import pytest

from cloudflare_sim.__main__ import main
from cloudflare_sim.app import make_app
from cloudflare_sim.server import make_http_server
from cloudflare_sim.store import Store
from tests.cloudflare_sim.conftest import TOKEN


@pytest.fixture
def state(tmp_path):
    path = str(tmp_path / "cli.sqlite3")
    assert main(["seed", "--state", path, "--seed", "4"]) == 0
    return path


@contextlib.contextmanager
def http_server(state_path):
    server = make_http_server(make_app(state_path, TOKEN), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def test_seed_json_prints_account_and_zones(tmp_path):
    path = tmp_path / "seeded.sqlite3"
    output = subprocess.run(
        [sys.executable, "-m", "cloudflare_sim", "seed", "--state", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    summary = json.loads(output)
    assert len(summary["account_id"]) == 32 and summary["tunnels"] == 24
    assert {z["name"] for z in summary["zones"]} == {"example.com", "example.io"}
    assert Store(path).accounts() == [summary["account_id"]]


def test_seed_is_deterministic_and_scales(tmp_path, capsys):
    ids = []
    for run in range(2):
        main(
            [
                "seed",
                "--state",
                str(tmp_path / f"s{run}.sqlite3"),
                "--tunnels",
                "300",
                "--seed",
                "2",
                "--json",
            ]
        )
        ids.append(json.loads(capsys.readouterr().out))
    assert ids[0] == ids[1] and ids[0]["tunnels"] == 300 and ids[0]["connectors"] > 500


def test_sdk_over_http_against_serve(state, monkeypatch):
    monkeypatch.delenv("CLOUDFLARE_EMAIL", raising=False)
    account_id = Store(state).accounts()[0]
    with http_server(state) as url:
        cf = cloudflare.Cloudflare(
            api_token=TOKEN, base_url=f"{url}/client/v4", max_retries=0, _strict_response_validation=True
        )
        tunnels = list(cf.zero_trust.tunnels.cloudflared.list(account_id=account_id, per_page=10))
        assert len(tunnels) == 24
        created = cf.zero_trust.tunnels.cloudflared.create(account_id=account_id, name="over-http")
        assert cf.zero_trust.tunnels.cloudflared.get(created.id, account_id=account_id).name == "over-http"
        with pytest.raises(cloudflare.PermissionDeniedError):
            cloudflare.Cloudflare(api_token="nope", base_url=f"{url}/client/v4", max_retries=0).zones.list()


def test_event_faults_and_stats_commands_against_the_state_file(state, capsys):
    assert main(["event", "tunnel-down", "--state", state, "--tunnel", "prod-eu-west-1-core"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "down"
    assert main(["event", "degrade", "--state", state, "--tunnel", "missing"]) == 1
    capsys.readouterr()
    assert (
        main(
            [
                "faults",
                "add",
                "--state",
                state,
                "--endpoint",
                "GET *",
                "--latency-ms",
                "5",
                "--rate-limit",
                "50",
            ]
        )
        == 0
    )
    config = json.loads(capsys.readouterr().out)
    assert (
        config["rules"] == [{"endpoint": "GET *", "latency_ms": 5.0}] and config["rate_limit"]["limit"] == 50
    )
    assert main(["faults", "clear", "--state", state]) == 0
    assert json.loads(capsys.readouterr().out)["rules"] == []
    assert main(["stats", "--state", state, "--reset"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 0


def test_event_and_stats_commands_against_a_running_server(state, capsys):
    with http_server(state) as url:
        assert main(["event", "degrade", "--url", url, "--tunnel", "prod-eu-west-1-core"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "degraded"
        assert main(["stats", "--url", url]) == 0
        assert "endpoints" in json.loads(capsys.readouterr().out)


def test_logpush_subcommand_is_dispatched(monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("cloudflare_sim.logpush")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "cloudflare_sim.logpush", fake)
    monkeypatch.setattr("cloudflare_sim.logpush", fake, raising=False)
    assert main(["logpush", "--bucket", "b"]) == 0
    assert seen == [["--bucket", "b"]]
