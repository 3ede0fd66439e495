"""The only module in Gatehouse that imports boto3: Logpush objects in S3 and the AWS inventory.

Clients are configured the standard way (AWS_ENDPOINT_URL, AWS_REGION, the usual credential chain), so the
same code reads AWS in production and moto's server on loopback in the demo and the tests. Everything returned
is plain data; botocore's errors become ours.
"""

import functools
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from django.conf import settings

from integrations.records import text

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
    """A private address the inventory found: what owns it, the port it listens on and what AWS calls it."""

    kind: str  # what owns the network interface: ec2, rds, elasticache, elb, lambda, endpoint or eni
    resource_id: str
    region: str
    address: str  # a private IP of the network interface
    port: int
    protocol: str  # TCP, UDP or ANY
    name: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    vpc_id: str = ""
    interface_id: str = ""


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
    return {text(t.get(key), 128): text(t.get(value), 256) for t in (items or [])[:50]}


def _pages(api, operation: str, key: str, **options) -> Iterator[dict]:
    for page in api.get_paginator(operation).paginate(**options):
        yield from page.get(key, [])


# What each kind of owner needs read besides the network interfaces themselves, as (IAM action, reader); a
# reader returns a lookup the ports and names come from.


def _security_group_ports(ec2) -> dict[str, list[tuple[int, str]]]:
    rules: dict[str, list[tuple[int, str]]] = {}
    for group in _pages(ec2, "describe_security_groups", "SecurityGroups"):
        ports = []
        for perm in group.get("IpPermissions", []):
            proto = str(perm.get("IpProtocol", "")).lower()
            low, high = perm.get("FromPort"), perm.get("ToPort")
            # A single port is a service; ranges and "all traffic" say nothing about what listens.
            if proto in ("tcp", "udp", "6", "17") and low is not None and low == high and 0 < low < 65536:
                ports.append((int(low), "UDP" if proto in ("udp", "17") else "TCP"))
        rules[group["GroupId"]] = ports
    return rules


def _instances(ec2) -> dict[str, dict[str, str]]:
    found = {}
    for reservation in _pages(ec2, "describe_instances", "Reservations"):
        for instance in reservation.get("Instances", []):
            found[instance["InstanceId"]] = _tags(instance.get("Tags"))
    return found


@dataclass(frozen=True)
class _Service:
    name: str
    ports: tuple[tuple[int, str], ...]
    resource_id: str
    private: bool = True
    tags: dict[str, str] = field(default_factory=dict)


def _databases(rds) -> list[tuple[str, frozenset[str], _Service]]:
    """(VPC, security groups, database): an RDS network interface carries its database's security groups."""
    found = []
    for db in _pages(rds, "describe_db_instances", "DBInstances"):
        port = int((db.get("Endpoint") or {}).get("Port") or db.get("DbInstancePort") or 0)
        groups = frozenset(g.get("VpcSecurityGroupId", "") for g in db.get("VpcSecurityGroups", []))
        service = _Service(
            name=f"{db['DBInstanceIdentifier']} ({db.get('Engine', '')})",
            ports=((port, "TCP"),) if port else (),
            resource_id=db["DBInstanceIdentifier"],
            private=not db.get("PubliclyAccessible"),
            tags=_tags(db.get("TagList")),
        )
        found.append(((db.get("DBSubnetGroup") or {}).get("VpcId", ""), groups, service))
    for cluster in _pages(rds, "describe_db_clusters", "DBClusters"):
        port = int(cluster.get("Port") or 0)
        groups = frozenset(g.get("VpcSecurityGroupId", "") for g in cluster.get("VpcSecurityGroups", []))
        service = _Service(
            name=f"{cluster['DBClusterIdentifier']} ({cluster.get('Engine', '')})",
            ports=((port, "TCP"),) if port else (),
            resource_id=cluster["DBClusterIdentifier"],
            tags=_tags(cluster.get("TagList")),
        )
        found.append(("", groups, service))
    return found


_CACHE_PORTS = {"redis": 6379, "valkey": 6379, "memcached": 11211}


def _caches(cache) -> dict[str, _Service]:
    found = {}
    for cluster in _pages(cache, "describe_cache_clusters", "CacheClusters", ShowCacheNodeInfo=True):
        endpoint = cluster.get("ConfigurationEndpoint") or next(
            (n.get("Endpoint") for n in cluster.get("CacheNodes", []) if n.get("Endpoint")), None
        )
        port = int((endpoint or {}).get("Port") or _CACHE_PORTS.get(str(cluster.get("Engine", "")), 0))
        found[cluster["CacheClusterId"]] = _Service(
            name=f"{cluster['CacheClusterId']} ({cluster.get('Engine', '')})",
            ports=((port, "TCP"),) if port else (),
            resource_id=cluster["CacheClusterId"],
        )
    return found


def _load_balancers(elb) -> dict[str, _Service]:
    """Load balancers by the "<type>/<name>/<id>" their network interfaces name."""
    found = {}
    for lb in _pages(elb, "describe_load_balancers", "LoadBalancers"):
        arn = lb["LoadBalancerArn"]
        ports = set()
        for listener in _pages(elb, "describe_listeners", "Listeners", LoadBalancerArn=arn):
            protocol = str(listener.get("Protocol", "")).upper()
            if listener.get("Port"):
                ports.add((int(listener["Port"]), "UDP" if protocol == "UDP" else "TCP"))
        found[arn.split(":loadbalancer/", 1)[-1]] = _Service(
            name=lb.get("LoadBalancerName", ""),
            ports=tuple(sorted(ports)),
            resource_id=arn,
            private=lb.get("Scheme") == "internal",
        )
    return found


def _owner(eni: dict) -> tuple[str, str]:
    """(kind, what AWS says owns it) from the interface's attachment, type and the description AWS gives it."""
    description = str(eni.get("Description", ""))
    kind = str(eni.get("InterfaceType", ""))
    instance = (eni.get("Attachment") or {}).get("InstanceId")
    if instance:
        return "ec2", instance
    if description.startswith("ELB "):
        return "elb", description[4:]
    if description == "RDSNetworkInterface" or eni.get("RequesterId") == "amazon-rds":
        return "rds", ""
    if description.startswith("ElastiCache "):
        return "elasticache", description[len("ElastiCache ") :]
    if kind == "lambda" or description.startswith("AWS Lambda VPC ENI-"):
        return "lambda", description.removeprefix("AWS Lambda VPC ENI-")
    if kind in ("vpc_endpoint", "interface_endpoint") or description.startswith("VPC Endpoint Interface "):
        return "endpoint", description.removeprefix("VPC Endpoint Interface ")
    return "eni", eni.get("NetworkInterfaceId", "")


def _private_addresses(eni: dict) -> list[str]:
    addresses = [a.get("PrivateIpAddress") for a in eni.get("PrivateIpAddresses", [])] or [eni.get("PrivateIpAddress")]
    addresses += [a.get("Ipv6Address") for a in eni.get("Ipv6Addresses", [])]
    private = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            continue
        if ip.is_private and not ip.is_loopback and not ip.is_link_local:
            private.append(str(ip))
    return private


# The IAM actions every kind needs: the interfaces and VPCs for all, and what names an owner's ports.
_BASE = (("ec2", "ec2:DescribeNetworkInterfaces"), ("ec2", "ec2:DescribeVpcs"))
_DETAILS = {
    "groups": ("ec2", ("ec2:DescribeSecurityGroups",), _security_group_ports),
    "instances": ("ec2", ("ec2:DescribeInstances",), _instances),
    "databases": ("rds", ("rds:DescribeDBInstances", "rds:DescribeDBClusters"), _databases),
    "caches": ("elasticache", ("elasticache:DescribeCacheClusters",), _caches),
    "balancers": (
        "elbv2",
        ("elasticloadbalancing:DescribeLoadBalancers", "elasticloadbalancing:DescribeListeners"),
        _load_balancers,
    ),
}
_NEEDS = {
    "ec2": ("groups", "instances"),
    "rds": ("databases",),
    "elasticache": ("caches",),
    "elb": ("balancers",),
    "lambda": (),
    "endpoint": ("groups",),
    "eni": ("groups",),
}
INVENTORY_KINDS = tuple(_NEEDS)
INVENTORY_ACTIONS = tuple(a for _, a in _BASE) + tuple(a for _, actions, _ in _DETAILS.values() for a in actions)


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
    vpcs: dict[str, list[str]] = field(default_factory=dict)  # VPC id -> its CIDR blocks


def _failure(region: str, kind: str, actions: tuple[str, ...], exc: Exception) -> InventoryFailure:
    if isinstance(exc, ClientError):
        action = next((a for a in actions if a.endswith(f":{exc.operation_name}")), actions[0])
        details = exc.response.get("Error", {})
        message = f"{details.get('Code', '')}: {details.get('Message', '')}".strip(": ")
    else:
        action = actions[0]
        message = f"AWS did not answer ({type(exc).__name__})"
    error = text(message or type(exc).__name__, 300)
    return InventoryFailure(region=region, kind=kind, action=action, error=error)


def _vpcs(ec2) -> dict[str, list[str]]:
    found = {}
    for vpc in _pages(ec2, "describe_vpcs", "Vpcs"):
        blocks = [b.get("CidrBlock") for b in vpc.get("CidrBlockAssociationSet", [])] or [vpc.get("CidrBlock")]
        blocks += [b.get("Ipv6CidrBlock") for b in vpc.get("Ipv6CidrBlockAssociationSet", [])]
        found[vpc["VpcId"]] = [str(b) for b in blocks if b]
    return found


def _services(kind: str, owner: str, eni: dict, lookups: dict[str, Any], vpc: str) -> list[_Service]:
    groups = [g.get("GroupId", "") for g in eni.get("Groups", [])]
    hinted = tuple(sorted({p for g in groups for p in lookups.get("groups", {}).get(g, [])}))
    if kind == "ec2":
        tags = lookups["instances"].get(owner, {})
        return [_Service(name=tags.get("Name", ""), ports=hinted, resource_id=owner, tags=tags)]
    if kind == "rds":
        key = frozenset(groups)
        return [s for v, g, s in lookups["databases"] if g == key and v in ("", vpc)] or [
            _Service(name="RDS", ports=(), resource_id=eni.get("NetworkInterfaceId", ""))
        ]
    if kind == "elasticache":
        cluster = lookups["caches"].get(owner) or next(
            (s for cid, s in lookups["caches"].items() if owner.startswith(cid)), None
        )
        return [cluster or _Service(name=owner, ports=(), resource_id=owner)]
    if kind == "elb":
        balancer = lookups["balancers"].get(owner)
        return [
            balancer
            or _Service(name=owner.split("/")[1] if owner.count("/") >= 2 else owner, ports=(), resource_id=owner)
        ]
    return [_Service(name=owner, ports=() if kind == "lambda" else hinted, resource_id=owner)]


def inventory(region: str) -> InventoryPass:
    """Every private address of every network interface in the region's VPCs, with what owns it (an instance,
    a database, a load balancer, a cache node, a Lambda function, an endpoint) and the ports that owner
    exposes. A kind whose details cannot be read is reported as a failure, not raised, and its interfaces are
    left out; without the interfaces or the VPCs nothing is recorded."""
    result = InventoryPass()
    ec2 = client("ec2", region)
    try:
        interfaces = list(_pages(ec2, "describe_network_interfaces", "NetworkInterfaces"))
        result.vpcs = _vpcs(ec2)
    except (ClientError, BotoCoreError) as exc:
        actions = tuple(a for _, a in _BASE)
        result.failures += [_failure(region, kind, actions, exc) for kind in INVENTORY_KINDS]
        return result
    lookups: dict[str, Any] = {}
    failed: set[str] = set()
    for name, (aws_service, actions, reader) in _DETAILS.items():
        try:
            lookups[name] = reader(client(aws_service, region))
        except (ClientError, BotoCoreError) as exc:
            failed.add(name)
            for kind, needs in _NEEDS.items():
                if name in needs and not any(f.kind == kind for f in result.failures):
                    result.failures.append(_failure(region, kind, actions, exc))
    for eni in interfaces:
        kind, owner = _owner(eni)
        if failed & set(_NEEDS[kind]) or not eni.get("VpcId"):
            continue
        for service in _services(kind, owner, eni, lookups, eni["VpcId"]):
            if not service.private:
                continue
            for address in _private_addresses(eni):
                for port, protocol in service.ports or ((0, "ANY"),):
                    result.items.append(
                        InventoryItem(
                            kind=kind,
                            resource_id=text(service.resource_id, 300),
                            region=region,
                            address=address,
                            port=port,
                            protocol=protocol,
                            name=text(service.name, 200),
                            tags=service.tags,
                            vpc_id=eni["VpcId"],
                            interface_id=str(eni.get("NetworkInterfaceId", ""))[:64],
                        )
                    )
    return result
