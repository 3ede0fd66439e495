"""The simulator's Logpush writer, against a real S3 endpoint (moto's server mode) through boto3."""

import collections
import datetime as dt
import gzip
import io
import ipaddress
import itertools
import json
import re
import sqlite3
import subprocess
import sys
import uuid
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from cloudflare_sim import logpush
from cloudflare_sim.logpush import (
    FIELDS,
    GATEWAY_NETWORK,
    MALFORMED,
    MALFORMED_REASONS,
    PUBLIC,
    VALID,
    ZERO_TRUST_NETWORK_SESSIONS,
)
from cloudflare_sim.store import Store

REPO = Path(__file__).resolve().parents[2]
END = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)
PRIVATE = [ipaddress.ip_network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8")]
KEY = re.compile(r"^(?P<prefix>.+)/(?P<day>\d{8})/(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)_[0-9a-f]{8}\.log\.gz$")
EMAIL = re.compile(r"^[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "GATEHOUSE_LOGPUSH_URL"):
        monkeypatch.delenv(name, raising=False)
    return s3_endpoint


@pytest.fixture
def s3(aws_env):
    return logpush.s3_client_from_environment()


@pytest.fixture
def bucket():
    return f"logpush-{uuid.uuid4().hex[:12]}"


def run_cli(*argv: str) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert logpush.main([*argv, "--json"]) == 0
    return json.loads(out.getvalue())


def stored_lines(s3, bucket: str, prefix: str) -> tuple[list[str], list[bytes]]:
    """Every key under the prefix in listing order, and every line of every object in that order."""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    lines: list[bytes] = []
    for key in keys:
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert body.endswith(b"\n")
        lines.extend(body[:-1].split(b"\n"))
    return keys, lines


def classify(raw: bytes, dataset: str) -> str:
    """What a strict ingester makes of one line: keep it, drop it as public, or reject it as malformed."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return MALFORMED
    if not isinstance(record, dict) or set(record) != set(FIELDS[dataset]):
        return MALFORMED
    zero_trust = dataset == ZERO_TRUST_NETWORK_SESSIONS
    port = record["OriginPort" if zero_trust else "DestinationPort"]
    address = record["OriginIP" if zero_trust else "DestinationIP"]
    times = [record["SessionStartTime"], record["SessionEndTime"]] if zero_trust else [record["Datetime"]]
    counters = [record["BytesSent"], record["BytesReceived"]] if zero_trust else []
    if type(port) is not int or not 0 <= port <= 65535:
        return MALFORMED
    if any(type(value) is not int or value <= 0 for value in times):
        return MALFORMED
    if any(type(value) is not int or not 0 <= value < 2**63 for value in counters):
        return MALFORMED
    if not EMAIL.match(record["Email"]) or not DEVICE_NAME.match(record["DeviceName"]):
        return MALFORMED
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else None
    except ValueError:
        ip = None
    if ip is None:
        return MALFORMED
    return VALID if any(ip in network for network in PRIVATE) else PUBLIC


def test_cli_writes_gzipped_objects_under_daily_folders_named_by_their_window(s3, bucket):
    summary = run_cli(
        "--to", f"s3://{bucket}/logpush/sessions", "--records", "3000", "--hours", "3", "--seed", "11",
        "--end", "2026-11-23T01:00:00Z", "--objects-per-hour", "4",
    )  # fmt: skip

    keys, lines = stored_lines(s3, bucket, "logpush/sessions")
    assert summary["objects"] == len(keys) == 12
    assert sorted(summary["keys"]) == keys
    assert len(lines) == summary["records"] == 3000
    windows = []
    for key in keys:
        match = KEY.match(key)
        assert match, key
        assert match["prefix"] == "logpush/sessions"
        start = dt.datetime.strptime(match["start"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        end = dt.datetime.strptime(match["end"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        assert match["day"] == start.strftime("%Y%m%d")
        windows.append((start, end))
    # The window crosses midnight, so objects land in two daily folders.
    assert {KEY.match(key)["day"] for key in keys} == {"20261122", "20261123"}
    assert windows[0][0] == END - dt.timedelta(hours=3)
    assert windows[-1][1] == END
    for (_, previous_end), (start, end) in itertools.pairwise(windows):
        assert start == previous_end
        assert end - start == dt.timedelta(minutes=15)


def test_a_strict_reader_finds_exactly_the_public_and_malformed_lines_the_summary_reports(s3, bucket):
    summary = logpush.write_logpush(
        s3, bucket, "zt", records=4000, hours=2, seed=5, end=END, public_share=0.03, malformed_share=0.02
    )

    _, lines = stored_lines(s3, bucket, "zt")
    verdicts = collections.Counter(classify(line, ZERO_TRUST_NETWORK_SESSIONS) for line in lines)
    assert verdicts == {VALID: summary.valid, PUBLIC: summary.public, MALFORMED: summary.malformed}
    assert (summary.public, summary.malformed) == (120, 80)
    assert summary.valid + summary.public + summary.malformed == summary.records == 4000


def test_generate_records_reproduces_what_was_written_line_for_line(s3, bucket):
    options = {"records": 2500, "hours": 2, "seed": 8, "end": END, "public_share": 0.02}
    logpush.write_logpush(s3, bucket, "zt", **options)

    _, lines = stored_lines(s3, bucket, "zt")
    generated = list(logpush.generate_records(**options))
    assert [line.data for line in generated] == lines
    for line in generated:
        assert classify(line.data, ZERO_TRUST_NETWORK_SESSIONS) == line.kind
        assert (line.record() is None) == (line.kind == MALFORMED)


def test_valid_records_have_the_dataset_fields_and_private_destinations_inside_their_window(s3, bucket):
    summary = logpush.write_logpush(s3, bucket, "zt", records=3000, hours=1, seed=3, end=END)

    keys, _ = stored_lines(s3, bucket, "zt")
    checked = 0
    for key in keys:
        match = KEY.match(key)
        start = int(dt.datetime.strptime(match["start"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp())
        end = int(dt.datetime.strptime(match["end"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp())
        body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for raw in body.splitlines():
            if classify(raw, ZERO_TRUST_NETWORK_SESSIONS) != VALID:
                continue
            record = json.loads(raw)
            assert list(record) == list(FIELDS[ZERO_TRUST_NETWORK_SESSIONS])
            assert any(ipaddress.ip_address(record["OriginIP"]) in network for network in PRIVATE)
            assert record["Protocol"] in {"TCP", "UDP", "ICMP"}
            assert record["Offramp"] in {"CFD_TUNNEL", "WARP", "MAGIC"}
            assert uuid.UUID(record["DestinationTunnelID"]) and uuid.UUID(record["VirtualNetworkID"])
            assert start * 10**9 <= record["SessionEndTime"] < end * 10**9
            assert record["SessionStartTime"] <= record["SessionEndTime"]
            assert type(record["ConnectionReuse"]) is bool
            checked += 1
    assert checked == summary.valid


def test_traffic_is_skewed_towards_few_origins_and_users_and_some_origins_are_unreachable():
    records = [
        line.record() for line in logpush.generate_records(records=20000, hours=24, seed=2, end=END)
        if line.kind == VALID
    ]  # fmt: skip
    origins = collections.Counter((r["VirtualNetworkID"], r["OriginIP"], r["OriginPort"]) for r in records)
    users = collections.Counter(r["Email"] for r in records)
    top_origins = sum(count for _, count in origins.most_common(len(origins) // 10))
    top_users = sum(count for _, count in users.most_common(len(users) // 10))
    assert top_origins > 0.5 * len(records)
    assert top_users > 0.35 * len(records)
    assert len(origins) > 100
    assert len({r["VirtualNetworkID"] for r in records}) >= 3
    assert {r["Email"].split("@")[1] for r in records} >= {
        "example.com",
        "northwind-it.example",
        "contoso-support.example",
    }
    assert any(ipaddress.ip_address(r["OriginIP"]).version == 6 for r in records)
    assert {r["OriginPort"] for r in records} >= {443, 80, 5432, 6379, 22, 3389, 8080, 9200, 10000}
    unreachable = [r for r in records if r["ConnectionCloseReason"] == "ORIGIN_UNREACHABLE"]
    assert 0 < len(unreachable) < 0.2 * len(records)
    # The same address in two virtual networks is two different origins: the networks overlap on purpose.
    assert len({vnet for vnet, address, _ in origins if address.startswith("10.")}) >= 2


def test_the_same_seed_writes_the_same_objects_and_another_seed_does_not(s3, bucket):
    options = {"records": 1500, "hours": 1, "end": END, "objects_per_hour": 3}
    first = logpush.write_logpush(s3, bucket, "a", seed=21, **options)
    again = logpush.write_logpush(s3, bucket, "b", seed=21, **options)
    other = logpush.write_logpush(s3, bucket, "c", seed=22, **options)

    def bodies(summary):
        return [s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in summary.keys]

    assert [key[2:] for key in first.keys] == [key[2:] for key in again.keys]
    assert bodies(first) == bodies(again)
    assert [key[2:] for key in first.keys] != [key[2:] for key in other.keys]
    assert bodies(first) != bodies(other)


def test_gateway_network_records_use_that_datasets_field_names(s3, bucket):
    summary = run_cli(
        "--to", f"s3://{bucket}/gw", "--records", "2000", "--hours", "1", "--seed", "4",
        "--end", "2026-11-23T01:00:00Z", "--dataset", "gateway_network", "--malformed-share", "0.02",
    )  # fmt: skip

    _, lines = stored_lines(s3, bucket, "gw")
    verdicts = collections.Counter(classify(line, GATEWAY_NETWORK) for line in lines)
    assert verdicts == {VALID: summary["valid"], PUBLIC: summary["public"], MALFORMED: summary["malformed"]}
    valid = [json.loads(line) for line in lines if classify(line, GATEWAY_NETWORK) == VALID]
    assert valid
    for record in valid:
        assert list(record) == list(FIELDS[GATEWAY_NETWORK])
        assert "OriginIP" not in record and "SessionStartTime" not in record
        assert any(ipaddress.ip_address(record["DestinationIP"]) in network for network in PRIVATE)
        assert record["TransportProtocol"] in {"tcp", "udp", "quic"}
        assert record["VirtualNetworkName"]
        assert type(record["Datetime"]) is int


def test_every_kind_of_malformed_line_is_written_and_is_really_broken():
    lines = [
        line
        for line in logpush.generate_records(records=3000, hours=1, seed=9, end=END, malformed_share=0.2)
        if line.kind == MALFORMED
    ]
    assert len(lines) == 600
    by_reason = {line.reason: line.data for line in lines}
    assert set(by_reason) == set(MALFORMED_REASONS)
    assert all(b"\n" not in line.data for line in lines)
    with pytest.raises(UnicodeDecodeError):
        by_reason["not_utf8"].decode("utf-8")
    with pytest.raises(ValueError):
        json.loads(by_reason["truncated"])
    assert isinstance(json.loads(by_reason["json_array"]), list)
    assert json.loads(by_reason["json_null"]) is None
    assert json.loads(by_reason["port_not_a_number"])["OriginPort"] == "abc"
    assert json.loads(by_reason["port_negative"])["OriginPort"] == -5
    assert json.loads(by_reason["port_out_of_range"])["OriginPort"] == 70000
    assert json.loads(by_reason["absurd_bytes"])["BytesSent"] >= 2**63
    assert "<script>" in json.loads(by_reason["script_in_identity"])["Email"]
    assert len(json.loads(by_reason["oversized_field"])["DeviceName"]) >= 100_000
    assert "OriginIP" not in json.loads(by_reason["missing_destination"])


def test_rfc3339_timestamps_when_asked():
    line = next(
        line
        for line in logpush.generate_records(records=50, hours=1, seed=1, end=END, timestamps="rfc3339")
        if line.kind == VALID
    )
    record = line.record()
    start = dt.datetime.fromisoformat(record["SessionStartTime"])
    end = dt.datetime.fromisoformat(record["SessionEndTime"])
    assert start <= end <= END
    assert record["SessionEndTime"].endswith("Z")


def test_a_window_busier_than_the_per_object_cap_becomes_several_objects(monkeypatch):
    monkeypatch.setattr("cloudflare_sim.logpush.plan.MAX_OBJECT_RECORDS", 1000)
    plans = logpush.plan_objects(records=5500, hours=1, seed=1, end=END, objects_per_hour=1)

    assert len(plans) == 6
    assert all(plan.records <= 1000 for plan in plans)
    assert sum(plan.records for plan in plans) == 5500
    assert plans[0].start == END - dt.timedelta(hours=1) and plans[-1].end == END
    assert all(a.end == b.start for a, b in itertools.pairwise(plans))
    assert len({plan.key("p") for plan in plans}) == 6


def test_ids_come_from_the_simulator_state_when_it_has_them(tmp_path):
    state = Store(tmp_path / "state.sqlite3")
    account = uuid.uuid4().hex
    tunnel_ids = sorted(str(uuid.uuid4()) for _ in range(20))
    vnet_ids = sorted(str(uuid.uuid4()) for _ in range(4))
    state.put_many("tunnel", [({"id": i, "name": "t"}, account, None) for i in tunnel_ids])
    state.put_many("vnet", [({"id": i, "name": "v"}, account, None) for i in vnet_ids])
    state.close()

    records = [
        line.record()
        for line in logpush.generate_records(records=500, hours=1, seed=1, end=END, state=state.path)
        if line.kind == VALID
    ]
    assert {r["AccountID"] for r in records} == {account}
    assert {r["VirtualNetworkID"] for r in records} <= set(vnet_ids)
    assert {r["DestinationTunnelID"] for r in records} <= set(tunnel_ids)


def test_tables_other_than_the_simulator_state_are_not_read_for_ids(tmp_path):
    state = tmp_path / "state.sqlite3"
    with sqlite3.connect(state) as conn:
        conn.execute("CREATE TABLE tunnels (id TEXT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO tunnels VALUES (?, 't')", (str(uuid.uuid4()),))
    conn.close()
    with_state = logpush.generate_records(records=50, hours=1, end=END, state=str(state))
    without = logpush.generate_records(records=50, hours=1, end=END)
    assert [line.data for line in with_state] == [line.data for line in without]


def test_ids_and_account_come_from_a_state_that_stores_documents_by_kind(tmp_path):
    state = tmp_path / "sim.sqlite3"
    account = uuid.uuid4().hex
    tunnels = {str(uuid.uuid4()): {"name": f"t{i}", "deleted_at": None} for i in range(12)}
    gone = str(uuid.uuid4())
    tunnels[gone] = {"name": "old", "deleted_at": "2026-01-01T00:00:00Z"}
    vnets = {str(uuid.uuid4()): {"name": f"net-{i}"} for i in range(4)}
    with sqlite3.connect(state) as conn:
        conn.execute(
            "CREATE TABLE objects (kind TEXT, id TEXT, account_id TEXT, parent TEXT, seq INTEGER, doc TEXT,"
            " PRIMARY KEY (kind, id))"
        )
        tunnel_ids, vnet_ids = sorted(set(tunnels) - {gone}), sorted(vnets)
        routes = {
            str(uuid.uuid4()): {"network": network, "tunnel_id": tunnel_ids[i], "virtual_network_id": vnet_ids[i % 2]}
            for i, network in enumerate(("10.20.0.0/20", "10.20.0.0/24", "172.18.4.0/24", "fd12:3456::/64"))
        }
        # A route to public space must not turn private sessions into public ones.
        public = {"network": "8.8.8.0/24", "tunnel_id": tunnel_ids[5], "virtual_network_id": vnet_ids[0]}
        routes[str(uuid.uuid4())] = public
        rows = [("tunnel", key, doc) for key, doc in tunnels.items()] + [("vnet", k, d) for k, d in vnets.items()]
        rows += [("route", key, doc) for key, doc in routes.items()]
        conn.executemany(
            "INSERT INTO objects VALUES (?, ?, ?, NULL, 0, ?)",
            [(kind, key, account, json.dumps({"id": key, **doc})) for kind, key, doc in rows],
        )
    conn.close()

    lines = logpush.generate_records(
        records=800, hours=1, seed=1, end=END, state=str(state), dataset=GATEWAY_NETWORK, public_share=0
    )
    records = [line.record() for line in lines if line.kind == VALID]
    assert {r["AccountID"] for r in records} == {account}
    assert {(r["VirtualNetworkID"], r["VirtualNetworkName"]) for r in records} <= {
        (key, doc["name"]) for key, doc in vnets.items()
    }
    sessions = [
        line.record()
        for line in logpush.generate_records(records=800, hours=1, seed=1, end=END, state=str(state))
        if line.kind == VALID
    ]
    assert sessions
    for record in sessions:
        # Every session goes to an address one of the account's routes sends through its tunnel and network.
        address = ipaddress.ip_address(record["OriginIP"])
        assert any(
            address in ipaddress.ip_network(route["network"])
            and record["DestinationTunnelID"] == route["tunnel_id"]
            and record["VirtualNetworkID"] == route["virtual_network_id"]
            for route in routes.values()
            if not route["network"].startswith("8.")
        )
    assert {r["DestinationTunnelID"] for r in sessions} <= set(tunnels) - {gone}


def test_an_unreadable_state_file_falls_back_to_ids_from_the_seed(tmp_path):
    state = tmp_path / "state.json"
    state.write_text('{"not": "sqlite"}')
    with_state = logpush.generate_records(records=50, hours=1, end=END, state=str(state))
    without = logpush.generate_records(records=50, hours=1, end=END)
    assert [line.data for line in with_state] == [line.data for line in without]


def test_the_cli_refuses_shares_that_add_up_to_more_than_everything(aws_env, bucket, capsys):
    with pytest.raises(SystemExit) as exit_info:
        logpush.main(
            ["--to", f"s3://{bucket}/x", "--records", "10", "--hours", "1",
             "--public-share", "0.7", "--malformed-share", "0.5"]
        )  # fmt: skip
    assert exit_info.value.code == 2
    assert "add up to at most 1" in capsys.readouterr().err


def test_bad_arguments_fail_before_the_bucket_is_touched(s3, bucket):
    with pytest.raises(ValueError, match="dataset"):
        logpush.write_logpush(s3, bucket, "x", records=10, hours=1, end=END, dataset="http_requests")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_bucket(Bucket=bucket)


def test_writing_streams_so_memory_does_not_grow_with_the_data_written(aws_env, bucket):
    # Measured in a child process so that the moto server in this one does not count; a small warm-up run
    # first, so that botocore's one-time loading is not charged to either measured run. Both measured runs
    # write objects of the same size, the second four times as many.
    script = f"""
import datetime as dt, json, tracemalloc
from cloudflare_sim import logpush
client = logpush.s3_client_from_environment()
end = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
logpush.write_logpush(client, {bucket!r}, "warm", records=100, hours=1, end=end)
measured = []
for records, hours in ((10_000, 2), (40_000, 8)):
    tracemalloc.start()
    summary = logpush.write_logpush(client, {bucket!r}, f"m{{records}}", records=records, hours=hours, seed=1,
                                    end=end, objects_per_hour=1)
    measured.append({{"peak": tracemalloc.get_traced_memory()[1], "raw": summary.bytes_uncompressed,
                      "gz": summary.bytes_compressed}})
    tracemalloc.stop()
print(json.dumps(measured))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    small, large = json.loads(result.stdout)
    assert large["raw"] > 3.5 * small["raw"] > 3.5 * 10_000 * 500
    # Holding the lines, or the objects, written so far would make the larger run's peak grow with it.
    assert large["peak"] < 1.3 * small["peak"]
    assert large["peak"] < large["gz"]
    assert large["peak"] < large["raw"] / 8
