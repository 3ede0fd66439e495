"""The only module in Gatehouse that imports boto3: Logpush objects in S3 and the AWS inventory.

Clients are configured the standard way (AWS_ENDPOINT_URL, AWS_REGION, the usual credential chain), so the
same code reads AWS in production and moto's server on loopback in the demo and the tests. Everything returned
is plain data; botocore's errors become ours.
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from django.conf import settings

__all__ = [
    "INVENTORY_ACTIONS",
    "AwsError",
    "AwsTransient",
    "InventoryFailure",
    "InventoryItem",
    "InventoryPass",
    "S3Object",
    "forget_clients",
    "inventory",
    "list_objects",
    "open_object",
    "parse_s3_url",
]

_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "InternalError", "503"}


class AwsError(Exception):
    """AWS refused the call; retrying will not help."""


class AwsTransient(AwsError):
    """Throttled, a 5xx or no connection: the same call may succeed later."""


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str
    size: int


@dataclass
class InventoryItem:
    """A resource the inventory found: where it listens and what AWS calls it."""

    kind: str  # ec2, rds, rds-cluster, elasticache, elb
    resource_id: str
    region: str
    address: str  # a private IP or an internal DNS name
    port: int
    protocol: str  # TCP, UDP or ANY
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    vpc_id: str = ""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, prefix)."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URL: {url!r}")
    return parsed.netloc, parsed.path.strip("/")


@functools.cache
def _client(service: str, region: str, endpoint: str):
    # A local endpoint such as moto has no wildcard DNS for bucket subdomains.
    options = {"s3": {"addressing_style": "path"}} if endpoint else {}
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30, **options)
    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint or None, config=config)


def forget_clients() -> None:
    """Drop cached clients; a forked process must open its own connections rather than share its parent's."""
    _client.cache_clear()


def client(service: str, region: str | None = None):
    return _client(service, region or settings.AWS_REGION, settings.AWS_ENDPOINT_URL)


def _translate(operation: str, exc: Exception) -> AwsError:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        text = f"{operation}: {code or status}"
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return AwsTransient(text)
        return AwsError(text)
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return AwsTransient(f"{operation}: AWS did not answer ({type(exc).__name__})")
    return AwsError(f"{operation}: {type(exc).__name__}")


def list_objects(bucket: str, prefix: str, *, start_after: str = "") -> Iterator[list[S3Object]]:
    """The bucket's objects under prefix, one page (up to 1,000) at a time, in key order."""
    s3 = client("s3")
    options: dict[str, Any] = {"Bucket": bucket, "Prefix": f"{prefix}/" if prefix else ""}
    if start_after:
        options["StartAfter"] = start_after
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(**options):
            yield [
                S3Object(key=item["Key"], etag=item["ETag"].strip('"'), size=int(item.get("Size", 0)))
                for item in page.get("Contents", [])
            ]
    except (ClientError, BotoCoreError) as exc:
        raise _translate("s3.list_objects", exc) from exc


def open_object(bucket: str, key: str, etag: str):
    """A streaming body of exactly the version listed (IfMatch), never read whole into memory."""
    try:
        return client("s3").get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')["Body"]
    except (ClientError, BotoCoreError) as exc:
        raise _translate("s3.get_object", exc) from exc


def _tags(items: list[dict] | None, key: str = "Key", value: str = "Value") -> dict[str, str]:
    return {str(t.get(key, ""))[:128]: str(t.get(value, ""))[:256] for t in (items or [])[:50]}


def _ec2(ec2) -> Iterator[InventoryItem]:
    rules: dict[str, list[tuple[int, str]]] = {}
    for page in ec2.get_paginator("describe_security_groups").paginate():
        for group in page.get("SecurityGroups", []):
            ports = []
            for perm in group.get("IpPermissions", []):
                proto = str(perm.get("IpProtocol", "")).lower()
                low, high = perm.get("FromPort"), perm.get("ToPort")
                # A single port is a service; ranges and "all traffic" say nothing about what listens.
                if proto in ("tcp", "udp", "6", "17") and low is not None and low == high and 0 < low < 65536:
                    ports.append((int(low), "UDP" if proto in ("udp", "17") else "TCP"))
            rules[group["GroupId"]] = ports
    region = ec2.meta.region_name
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("State", {}).get("Name") in ("terminated", "shutting-down"):
                    continue
                ip = instance.get("PrivateIpAddress")
                if not ip:
                    continue
                tags = _tags(instance.get("Tags"))
                services = sorted(
                    {p for g in instance.get("SecurityGroups", []) for p in rules.get(g.get("GroupId"), [])}
                ) or [(0, "ANY")]
                for port, protocol in services:
                    yield InventoryItem(
                        kind="ec2",
                        resource_id=instance["InstanceId"],
                        region=region,
                        address=ip,
                        port=port,
                        protocol=protocol,
                        name=tags.get("Name", ""),
                        tags=tags,
                        vpc_id=instance.get("VpcId", ""),
                    )


def _rds_instances(rds) -> Iterator[InventoryItem]:
    for page in rds.get_paginator("describe_db_instances").paginate():
        for db in page.get("DBInstances", []):
            endpoint = db.get("Endpoint") or {}
            if not endpoint.get("Address") or db.get("PubliclyAccessible"):
                continue
            yield InventoryItem(
                kind="rds",
                resource_id=db["DBInstanceIdentifier"],
                region=rds.meta.region_name,
                address=endpoint["Address"],
                port=int(endpoint.get("Port") or 0),
                protocol="TCP",
                name=f"{db['DBInstanceIdentifier']} ({db.get('Engine', '')})",
                tags=_tags(db.get("TagList")),
                vpc_id=(db.get("DBSubnetGroup") or {}).get("VpcId", ""),
            )


def _rds_clusters(rds) -> Iterator[InventoryItem]:
    for page in rds.get_paginator("describe_db_clusters").paginate():
        for cluster in page.get("DBClusters", []):
            if not cluster.get("Endpoint"):
                continue
            yield InventoryItem(
                kind="rds-cluster",
                resource_id=cluster["DBClusterIdentifier"],
                region=rds.meta.region_name,
                address=cluster["Endpoint"],
                port=int(cluster.get("Port") or 0),
                protocol="TCP",
                name=f"{cluster['DBClusterIdentifier']} ({cluster.get('Engine', '')})",
                tags=_tags(cluster.get("TagList")),
            )


def _elasticache(cache) -> Iterator[InventoryItem]:
    for page in cache.get_paginator("describe_cache_clusters").paginate(ShowCacheNodeInfo=True):
        for cluster in page.get("CacheClusters", []):
            endpoint = cluster.get("ConfigurationEndpoint") or {}
            nodes = [n.get("Endpoint") or {} for n in cluster.get("CacheNodes", [])]
            for point in [endpoint] if endpoint.get("Address") else nodes:
                if not point.get("Address"):
                    continue
                yield InventoryItem(
                    kind="elasticache",
                    resource_id=cluster["CacheClusterId"],
                    region=cache.meta.region_name,
                    address=point["Address"],
                    port=int(point.get("Port") or 0),
                    protocol="TCP",
                    name=f"{cluster['CacheClusterId']} ({cluster.get('Engine', '')})",
                )


def _load_balancers(elb) -> Iterator[InventoryItem]:
    for page in elb.get_paginator("describe_load_balancers").paginate():
        for lb in page.get("LoadBalancers", []):
            if lb.get("Scheme") != "internal" or not lb.get("DNSName"):
                continue
            listeners = [
                listener
                for listeners_page in elb.get_paginator("describe_listeners").paginate(
                    LoadBalancerArn=lb["LoadBalancerArn"]
                )
                for listener in listeners_page.get("Listeners", [])
            ]
            for listener in listeners or [{"Port": 0, "Protocol": "ANY"}]:
                protocol = "UDP" if str(listener.get("Protocol", "")).upper() == "UDP" else "TCP"
                if listener.get("Protocol") == "ANY":
                    protocol = "ANY"
                yield InventoryItem(
                    kind="elb",
                    resource_id=lb["LoadBalancerArn"],
                    region=elb.meta.region_name,
                    address=lb["DNSName"],
                    port=int(listener.get("Port") or 0),
                    protocol=protocol,
                    name=lb.get("LoadBalancerName", ""),
                    vpc_id=lb.get("VpcId", ""),
                )


# Each kind of resource is read on its own, so one denied or failing call costs only that kind: (kind, boto3
# service, IAM service prefix, the calls it makes, reader). The README's IAM policy lists every one of these calls.
_SOURCES = (
    ("ec2", "ec2", "ec2", ("DescribeSecurityGroups", "DescribeInstances"), _ec2),
    ("rds", "rds", "rds", ("DescribeDBInstances",), _rds_instances),
    ("rds-cluster", "rds", "rds", ("DescribeDBClusters",), _rds_clusters),
    ("elasticache", "elasticache", "elasticache", ("DescribeCacheClusters",), _elasticache),
    ("elb", "elbv2", "elasticloadbalancing", ("DescribeLoadBalancers", "DescribeListeners"), _load_balancers),
)
INVENTORY_ACTIONS = tuple(f"{prefix}:{call}" for _, _, prefix, calls, _ in _SOURCES for call in calls)
_CONTROL = dict.fromkeys(range(32), " ")


@dataclass(frozen=True)
class InventoryFailure:
    """One kind of resource in one region that could not be read; its earlier results stay as they were."""

    region: str
    kind: str
    action: str  # the IAM action that failed, e.g. elasticloadbalancing:DescribeListeners
    error: str  # AWS's code and message: untrusted, bounded, without control characters


@dataclass
class InventoryPass:
    items: list[InventoryItem] = field(default_factory=list)
    failures: list[InventoryFailure] = field(default_factory=list)


def _failure(region: str, kind: str, prefix: str, calls: tuple[str, ...], exc: Exception) -> InventoryFailure:
    if isinstance(exc, ClientError):
        call = exc.operation_name if exc.operation_name in calls else calls[0]
        details = exc.response.get("Error", {})
        text = f"{details.get('Code', '')}: {details.get('Message', '')}".strip(": ")
    else:
        call = calls[0]
        text = f"AWS did not answer ({type(exc).__name__})"
    error = (text or type(exc).__name__).translate(_CONTROL)[:300]
    return InventoryFailure(region=region, kind=kind, action=f"{prefix}:{call}", error=error)


def inventory(region: str) -> InventoryPass:
    """Everything private the inventory covers in one region: EC2, RDS instances and clusters, ElastiCache,
    internal load balancers. A kind that cannot be read is reported as a failure, not raised."""
    result = InventoryPass()
    for kind, service, prefix, calls, reader in _SOURCES:
        try:
            items = list(reader(client(service, region)))
        except (ClientError, BotoCoreError) as exc:
            result.failures.append(_failure(region, kind, prefix, calls, exc))
            continue
        result.items.extend(items)
    return result
