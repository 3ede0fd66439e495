import datetime as dt

import pytest
from moto.server import ThreadedMotoServer

from integrations import aws

END = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
BUCKET = "gatehouse-logs"
PREFIX = "gateway/network"


@pytest.fixture(scope="session")
def moto_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def moto(moto_endpoint, monkeypatch, settings):
    """AWS as moto's server on loopback, emptied for each test; Gatehouse and boto3 are pointed at it."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    settings.AWS_ENDPOINT_URL = moto_endpoint
    settings.AWS_REGION = "us-east-1"
    settings.GATEHOUSE_AWS_REGIONS = ["us-east-1"]
    settings.GATEHOUSE_LOGPUSH_URL = f"s3://{BUCKET}/{PREFIX}"
    aws.forget_clients()
    yield moto_endpoint
    aws.forget_clients()


@pytest.fixture
def s3(moto):
    return aws.client("s3")


@pytest.fixture
def logpush(s3):
    """Writes Logpush objects with the simulator's writer; returns its summary."""
    from cloudflare_sim.logpush import write_logpush

    def write(**options):
        options.setdefault("hours", 2)
        options.setdefault("end", END)
        options.setdefault("seed", 5)
        options.setdefault("origins", 40)
        options.setdefault("users", 30)
        return write_logpush(s3, BUCKET, PREFIX, **options)

    return write


@pytest.fixture
def make_origin(db):
    import itertools

    from discovery.models import Origin, ip_key

    counter = itertools.count(1)

    def make(**fields):
        n = next(counter)
        fields.setdefault("vnet_id", "3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10")
        fields.setdefault("address", f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")
        fields.setdefault("port", 443)
        fields.setdefault("protocol", "TCP")
        fields.setdefault("seen_in_traffic", True)
        fields.setdefault("sessions", n)
        fields.setdefault("users", n % 50)
        fields.setdefault("bytes_total", n * 1000)
        fields["ip_key"] = ip_key(fields["address"])
        origin = Origin(**fields)
        if "search_text" not in fields:
            origin.search_text = origin.compute_search_text()
        origin.save()
        return origin

    return make
