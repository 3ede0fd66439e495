"""The AWS inventory against moto: what it finds becomes origins, matched with what traffic showed."""

import io
import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from discovery import services
from discovery.models import InventoryRun, Origin
from integrations import aws

VNET = "3b1bd4e6-2a5e-4d53-9d3c-0e3e1d6b7a10"


@pytest.fixture
def estate(moto):
    """A small AWS estate in moto: instances behind security groups, a database, a cache, load balancers and a
    Lambda function, each with the network interface AWS gives it in the VPC."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    subnet_b = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.2.0/24", AvailabilityZone="us-east-1b")["Subnet"][
        "SubnetId"
    ]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            {"IpProtocol": "tcp", "FromPort": 8000, "ToPort": 8100, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        ],
    )
    bare = ec2.create_security_group(GroupName="bare", Description="bare", VpcId=vpc)["GroupId"]
    database = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        PrivateIpAddress="10.40.1.10",
        SecurityGroupIds=[web],
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "<script>alert(1)</script>"}]}
        ],
    )
    ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress="10.40.1.11",
        SecurityGroupIds=[bare],
    )  # fmt: skip
    rds = aws.client("rds")
    rds.create_db_subnet_group(
        DBSubnetGroupName="private", DBSubnetGroupDescription="private", SubnetIds=[subnet, subnet_b]
    )
    rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="admin",
        MasterUserPassword="not-a-secret-123",
        AllocatedStorage=20,
        PubliclyAccessible=False,
        VpcSecurityGroupIds=[database],
        DBSubnetGroupName="private",
    )
    aws.client("elasticache").create_cache_cluster(
        CacheClusterId="sessions", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1
    )
    elb = aws.client("elbv2")
    internal = elb.create_load_balancer(Name="internal-api", Subnets=[subnet, subnet_b], Scheme="internal")
    public = elb.create_load_balancer(Name="public-site", Subnets=[subnet, subnet_b], Scheme="internet-facing")
    group = elb.create_target_group(Name="api", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0]
    internal_arn = internal["LoadBalancers"][0]["LoadBalancerArn"]
    elb.create_listener(
        LoadBalancerArn=internal_arn,
        Protocol="HTTP",
        Port=8080,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group["TargetGroupArn"]}],
    )
    # The interfaces AWS itself creates for managed services, with the descriptions it gives them.
    public_arn = public["LoadBalancers"][0]["LoadBalancerArn"]
    for address, description, groups in [
        ("10.40.1.20", "RDSNetworkInterface", [database]),
        ("10.40.1.30", "ElastiCache sessions-0001", [bare]),
        ("10.40.1.40", "ELB " + internal_arn.split(":loadbalancer/")[1], [bare]),
        ("10.40.1.41", "ELB " + public_arn.split(":loadbalancer/")[1], [bare]),
        ("10.40.1.50", "AWS Lambda VPC ENI-resize-images-1b2c3d4e", [bare]),
    ]:
        ec2.create_network_interface(SubnetId=subnet, PrivateIpAddress=address, Description=description, Groups=groups)
    return vpc


def _route(network, vnet=VNET, name="prod"):
    import uuid

    from tunnels.models import Route, VirtualNetwork

    network_row, _ = VirtualNetwork.objects.get_or_create(cf_id=vnet, defaults={"name": name})
    return Route.objects.create(
        cf_id=uuid.uuid4(), network=network, tunnel_cf_id=uuid.uuid4(), virtual_network=network_row
    )


def _inventory():
    return {o.address: o for o in Origin.objects.filter(seen_in_inventory=True)}


def test_discover_aws_records_every_private_address_of_every_network_interface_with_its_owner(db, estate):
    out = io.StringIO()
    call_command("discover_aws", stdout=out)
    found = _inventory()
    assert {a: (o.inventory["kind"], o.port, o.protocol) for a, o in found.items() if a.startswith("10.40.")} == {
        "10.40.1.10": ("ec2", 443, "TCP"),
        "10.40.1.11": ("ec2", 0, "ANY"),  # no single-port rule: the host itself
        "10.40.1.20": ("rds", 5432, "TCP"),  # the engine's port
        "10.40.1.30": ("elasticache", 6379, "TCP"),
        "10.40.1.40": ("elb", 8080, "TCP"),  # the listener's port
        "10.40.1.50": ("lambda", 0, "ANY"),
    }
    assert found["10.40.1.10"].inventory["name"] == "<script>alert(1)</script>"
    assert found["10.40.1.20"].inventory["name"] == "orders-db (postgres)"
    assert found["10.40.1.40"].inventory["name"] == "internal-api"
    assert found["10.40.1.50"].inventory["name"] == "resize-images-1b2c3d4e"
    # Every inventory origin is an address, like traffic's; an internet-facing load balancer is not inventory.
    assert all(o.ip_key for o in Origin.objects.all())
    assert "10.40.1.41" not in found
    assert "discover_aws:" in out.getvalue()


def test_each_vpc_takes_the_virtual_network_whose_routes_cover_it(db, estate):
    _route("10.40.0.0/16")
    _route("10.40.1.0/24", vnet="9a7c3d4e-0000-4000-8000-00000000beef", name="lab")
    services.inventory_discover(regions=["us-east-1"])
    found = _inventory()
    assert {o.vnet_id for a, o in found.items() if a.startswith("10.40.")} == {VNET}
    # moto's default VPC (172.31.0.0/16) has no route: its network stays unknown.
    assert {o.vnet_id for a, o in found.items() if a.startswith("172.31.")} <= {""}


def test_a_vpc_two_networks_cover_alike_gets_no_network(db, estate):
    _route("10.40.0.0/16")
    _route("10.40.0.0/16", vnet="9a7c3d4e-0000-4000-8000-00000000beef", name="copy")
    services.inventory_discover(regions=["us-east-1"])
    assert {o.vnet_id for o in _inventory().values()} == {""}


def test_an_inventory_origin_placed_later_in_its_network_keeps_its_row(db, estate):
    services.inventory_discover(regions=["us-east-1"])
    before = Origin.objects.get(address="10.40.1.20")
    _route("10.40.0.0/16")
    services.inventory_discover(regions=["us-east-1"])
    after = Origin.objects.get(address="10.40.1.20")
    assert after.pk == before.pk and after.vnet_id == VNET


def test_running_the_inventory_twice_leaves_the_same_origins(db, estate):
    services.inventory_discover(regions=["us-east-1"])
    first = sorted(Origin.objects.values_list("address", "port", "protocol"))
    services.inventory_discover(regions=["us-east-1"])
    assert sorted(Origin.objects.values_list("address", "port", "protocol")) == first


def test_traffic_to_an_inventoried_host_makes_one_origin_seen_in_both(db, estate, s3):
    import gzip

    from tests.discovery.conftest import BUCKET, PREFIX

    _route("10.40.0.0/16")
    services.inventory_discover(regions=["us-east-1"])
    record = {
        "SessionStartTime": 1763640000000000000, "SessionEndTime": 1763640001000000000, "OriginIP": "10.40.1.10",
        "OriginPort": 443, "Protocol": "TCP", "VirtualNetworkID": VNET, "Email": "bob@example.com",
        "BytesSent": 10, "BytesReceived": 20,
    }  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20251120/a.log.gz", Body=gzip.compress(json.dumps(record).encode()))
    services.logpush_ingest(url=f"s3://{BUCKET}/{PREFIX}")

    [web] = Origin.objects.filter(address="10.40.1.10")
    assert (web.source, web.vnet_id, web.sessions, web.users) == ("both", VNET, 1, 1)


def test_a_resource_gone_from_aws_loses_its_inventory_mark(db, estate):
    services.inventory_discover(regions=["us-east-1"])
    ec2 = aws.client("ec2")
    [interface] = ec2.describe_network_interfaces(Filters=[{"Name": "description", "Values": ["RDSNetworkInterface"]}])[
        "NetworkInterfaces"
    ]
    ec2.delete_network_interface(NetworkInterfaceId=interface["NetworkInterfaceId"])
    services.inventory_discover(regions=["us-east-1"])
    assert not Origin.objects.get(inventory__kind="rds").seen_in_inventory
    assert Origin.objects.get(address="10.40.1.10").seen_in_inventory


def _readme_aws_actions() -> set[str]:
    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    paragraph = readme[readme.index("**AWS**:") :].split("\n\n")[0]
    return set(re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", paragraph))


@pytest.fixture
def aws_policy(moto, monkeypatch):
    """Enforce IAM in moto and sign every call as a user holding only the given actions."""
    import requests

    def grant(actions):
        iam = aws.client("iam")
        iam.create_user(UserName="gatehouse")
        document = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}],
        }
        iam.put_user_policy(UserName="gatehouse", PolicyName="gatehouse", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName="gatehouse")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        aws.forget_clients()
        requests.post(f"{moto}/moto-api/reset-auth", data=b"0", timeout=10)

    yield grant
    requests.post(f"{moto}/moto-api/reset-auth", data=b"inf", timeout=10)


def test_the_readme_policy_allows_every_call_gatehouse_makes(db, estate, s3, aws_policy):
    from tests.discovery.conftest import BUCKET, PREFIX

    documented = _readme_aws_actions()
    assert set(aws.INVENTORY_ACTIONS) <= documented
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/20251120/a.log.gz", Body=b"")
    aws_policy(documented)

    run = services.inventory_discover(regions=["us-east-1"])

    assert run.warnings == []
    assert {o.inventory["kind"] for o in Origin.objects.all()} == {"ec2", "rds", "elasticache", "elb", "lambda"}
    [[listed]] = list(aws.list_objects(BUCKET, PREFIX))
    assert aws.open_object(BUCKET, listed.key, listed.etag).read() == b""


def test_a_denied_call_costs_only_its_kind_and_the_discovery_page_says_which(db, estate, aws_policy, viewer_client):
    services.inventory_discover(regions=["us-east-1"])
    elb_before = Origin.objects.get(inventory__kind="elb")
    # A new database: its interface carries its security group, which is how its port is found.
    ec2 = aws.client("ec2")
    [vpc_subnet] = ec2.describe_subnets(Filters=[{"Name": "cidr-block", "Values": ["10.40.1.0/24"]}])["Subnets"]
    billing = ec2.create_security_group(GroupName="billing", Description="billing", VpcId=estate)["GroupId"]
    aws.client("rds").create_db_instance(
        DBInstanceIdentifier="billing-db", DBInstanceClass="db.t3.micro", Engine="mysql", MasterUsername="admin",
        MasterUserPassword="not-a-secret-123", AllocatedStorage=20, PubliclyAccessible=False,
        VpcSecurityGroupIds=[billing], DBSubnetGroupName="private",
    )  # fmt: skip
    ec2.create_network_interface(
        SubnetId=vpc_subnet["SubnetId"], PrivateIpAddress="10.40.1.21", Description="RDSNetworkInterface",
        Groups=[billing],
    )  # fmt: skip
    aws_policy(_readme_aws_actions() - {"elasticloadbalancing:DescribeListeners"})

    run = services.inventory_discover(regions=["us-east-1"])

    [warning] = run.warnings
    assert (warning["action"], warning["region"], warning["kind"]) == (
        "elasticloadbalancing:DescribeListeners",
        "us-east-1",
        "elb",
    )
    assert warning["error"].startswith("AccessDenied")
    # The load balancer keeps what the earlier pass found; the other kinds moved on, the new database included.
    elb_after = Origin.objects.get(inventory__kind="elb")
    assert elb_after.seen_in_inventory and elb_after.inventory_seen_at == elb_before.inventory_seen_at
    billing_db = Origin.objects.get(address="10.40.1.21", seen_in_inventory=True)
    assert (billing_db.port, billing_db.inventory["name"]) == (3306, "billing-db (mysql)")
    assert Origin.objects.filter(inventory__kind="ec2", inventory_seen_at__gt=elb_before.inventory_seen_at).exists()
    body = viewer_client.get(reverse("discovery:origin_list")).content.decode()
    assert "elasticloadbalancing:DescribeListeners</code> in us-east-1 (elb): AccessDenied" in body


def test_every_denied_kind_is_a_warning_and_the_command_reports_them(db, estate, aws_policy):
    aws_policy(
        {"ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeInstances", "ec2:DescribeSecurityGroups"}
    )
    out, err = io.StringIO(), io.StringIO()
    call_command("discover_aws", stdout=out, stderr=err)
    assert sorted((w["kind"], w["action"]) for w in InventoryRun.objects.get().warnings) == [
        ("elasticache", "elasticache:DescribeCacheClusters"),
        ("elb", "elasticloadbalancing:DescribeLoadBalancers"),
        ("rds", "rds:DescribeDBInstances"),
    ]
    assert set(Origin.objects.values_list("inventory__kind", flat=True)) == {"ec2", "lambda"}
    assert "rds:DescribeDBInstances in us-east-1 failed: AccessDenied" in err.getvalue()
    assert "3 warnings" in out.getvalue()


def test_without_the_network_interfaces_nothing_changes_and_every_kind_warns(db, estate, aws_policy):
    services.inventory_discover(regions=["us-east-1"])
    before = set(Origin.objects.filter(seen_in_inventory=True).values_list("pk", flat=True))
    aws_policy(_readme_aws_actions() - {"ec2:DescribeNetworkInterfaces"})
    run = services.inventory_discover(regions=["us-east-1"])
    assert {w["action"] for w in run.warnings} == {"ec2:DescribeNetworkInterfaces"}
    assert {w["kind"] for w in run.warnings} == set(aws.INVENTORY_KINDS)
    assert set(Origin.objects.filter(seen_in_inventory=True).values_list("pk", flat=True)) == before


def test_inventory_warnings_are_escaped_and_bounded_on_the_page(db, viewer_client):
    InventoryRun.objects.create(
        finished_at=timezone.now(),
        warnings=[{"region": "us-east-1", "kind": "ec2", "action": "ec2:DescribeInstances", "error": "<b>x</b>" * 100}],
    )
    body = viewer_client.get(reverse("discovery:origin_list")).content.decode()
    assert "<b>x</b>" not in body and "&lt;b&gt;x&lt;/b&gt;" in body
    assert body.count("&lt;b&gt;x&lt;/b&gt;") < 300 // len("<b>x</b>") + 1


def test_an_endpoint_that_does_not_answer_keeps_the_previous_pass_and_warns(db, estate, settings, viewer_client):
    import socket

    services.inventory_discover(regions=["us-east-1"])
    before = set(Origin.objects.filter(seen_in_inventory=True).values_list("pk", flat=True))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
    aws.forget_clients()

    run = services.inventory_discover(regions=["us-east-1"])

    assert {w["action"] for w in run.warnings} == {"ec2:DescribeNetworkInterfaces"}
    assert all(w["error"] == "AWS did not answer (EndpointConnectionError)" for w in run.warnings)
    assert set(Origin.objects.filter(seen_in_inventory=True).values_list("pk", flat=True)) == before
    body = viewer_client.get(reverse("discovery:origin_list")).content.decode()
    assert "AWS did not answer (EndpointConnectionError)" in body


def test_names_and_tags_from_aws_lose_control_and_bidirectional_characters(db, estate):
    ec2 = aws.client("ec2")
    subnet = next(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["CidrBlock"].startswith("10.40.1."))
    spoof = "invoice\u202efdp.exe\n\u2066admin"
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        PrivateIpAddress="10.40.1.99",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": spoof}]}],
    )
    call_command("discover_aws", stdout=io.StringIO())
    inventory = _inventory()["10.40.1.99"].inventory
    assert inventory["name"] == "invoicefdp.exeadmin"
    assert inventory["tags"]["Name"] == "invoicefdp.exeadmin"


def test_the_demo_estate_lists_the_busiest_hosts_of_each_routed_network_and_one_that_no_session_reached(
    db, moto, make_origin
):
    _route("10.50.0.0/20")
    _route("10.60.0.0/24", vnet="9d0b8a2e-51c4-4b9e-8f8e-2a7e9f6c1d30", name="staging")
    _route("172.16.0.0/12")  # too wide for a VPC
    for n, sessions in enumerate([50, 40, 30, 20]):
        make_origin(address=f"10.50.1.{n + 10}", port=5432, sessions=sessions, seen_in_traffic=True)
    staging = "9d0b8a2e-51c4-4b9e-8f8e-2a7e9f6c1d30"
    # AWS keeps the first four addresses of a subnet: the busiest host of staging cannot be an instance.
    make_origin(vnet_id=staging, address="10.60.0.2", port=443, sessions=99, seen_in_traffic=True)
    make_origin(vnet_id=staging, address="10.60.0.9", port=443, sessions=5, seen_in_traffic=True)
    out = io.StringIO()

    call_command("demo_aws", stdout=out)
    call_command("demo_aws", stdout=out)
    services.inventory_discover(regions=["us-east-1"])

    assert out.getvalue().splitlines() == ["demo_aws: 2 VPCs, 6 instances", "demo_aws: the estate is already there"]
    listed = {(o.vnet_id, o.address, o.port, o.seen_in_traffic) for o in Origin.objects.filter(seen_in_inventory=True)}
    assert listed == {
        (VNET, "10.50.1.10", 5432, True),
        (VNET, "10.50.1.11", 5432, True),
        (VNET, "10.50.1.12", 5432, True),
        (VNET, "10.50.0.4", 443, False),
        (staging, "10.60.0.9", 443, True),
        (staging, "10.60.0.4", 443, False),
    }


def test_the_demo_estate_is_refused_without_a_stand_in_for_aws(db, settings):
    from django.core.management.base import CommandError

    settings.AWS_ENDPOINT_URL = ""
    with pytest.raises(CommandError, match="stand-in"):
        call_command("demo_aws")
