"""The command line and the `serve` code path: a real HTTP server on a loopback port."""

from __future__ import annotations

import contextlib
import gzip
import json
import subprocess
import sys
import threading

import boto3
import cloudflare
import pytest
from moto.server import ThreadedMotoServer

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
    assert config["rules"] == [{"endpoint": "GET *", "latency_ms": 5.0}] and config["rate_limit"]["limit"] == 50
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


def test_logpush_command_writes_sessions_through_the_state_tunnels_to_s3(state, monkeypatch, capsys):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "GATEHOUSE_LOGPUSH_URL"):
            monkeypatch.delenv(name, raising=False)
        argv = ["logpush", "--to", "s3://cli-logpush/gateway", "--records", "300", "--hours", "1"]
        argv += ["--end", "2026-11-23T01:00:00Z", "--public-share", "0", "--malformed-share", "0"]
        argv += ["--state", state, "--json"]
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        listed = s3.list_objects_v2(Bucket="cli-logpush", Prefix="gateway/")["Contents"]
        bodies = [s3.get_object(Bucket="cli-logpush", Key=item["Key"])["Body"].read() for item in listed]
        lines = [json.loads(line) for body in bodies for line in gzip.decompress(body).splitlines()]
    finally:
        server.stop()

    assert summary["records"] == summary["valid"] == len(lines) == 300
    assert sorted(summary["keys"]) == sorted(item["Key"] for item in listed)
    assert all(key.startswith("gateway/20261123/") for key in summary["keys"])
    # The sessions go through the tunnels and networks of the account in the state file, not ids from the seed.
    store = Store(state)
    tunnels = {tunnel["id"] for tunnel in store.list("tunnel")}
    assert {line["AccountID"] for line in lines} == set(store.accounts())
    assert {line["DestinationTunnelID"] for line in lines} <= tunnels
    assert {line["VirtualNetworkID"] for line in lines} <= {vnet["id"] for vnet in store.list("vnet")}
