"""`manage.py demo_aws`: the demo's AWS estate in moto, laid over the private networks the demo's tunnels route.

`make demo` runs it after the first sync and Logpush ingest and before the inventory pass, so the catalogue shows
what a real account shows: hosts that traffic reached and AWS lists, hosts AWS lists that no session has reached
yet, and traffic to addresses AWS does not know. moto keeps its estate in memory, so each start lays it again; an
estate already there (a VPC with the demo's tag) is left alone.
"""

import ipaddress

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from discovery.models import Origin
from integrations import aws
from tunnels.models import Route

TAG = "gatehouse-demo"
NETWORKS = 4  # VPCs, one per routed network
HOSTS_WITH_TRAFFIC = 3  # per VPC: the busiest TCP origins of its network
SERVICES = {22: "bastion", 443: "web", 636: "ldap", 3306: "mysql", 3389: "desktop", 5432: "postgres", 6379: "redis"}
SERVICES |= {8080: "api", 9092: "kafka", 9200: "search", 27017: "mongo"}


class Command(BaseCommand):
    help = "Lay the demo's AWS estate in moto: a VPC per routed network, with instances on addresses traffic reached."

    def handle(self, *args, **options):
        if not settings.AWS_ENDPOINT_URL:
            raise CommandError("demo_aws lays a made-up estate in a stand-in for AWS; set AWS_ENDPOINT_URL to one.")
        ec2 = aws.client("ec2")
        if ec2.describe_vpcs(Filters=[{"Name": "tag-key", "Values": [TAG]}])["Vpcs"]:
            self.stdout.write("demo_aws: the estate is already there")
            return
        instances = 0
        networks = _routed_networks()
        for index, (network, vnet_id) in enumerate(networks):
            instances += _lay_network(ec2, index, network, vnet_id)
        self.stdout.write(f"demo_aws: {len(networks)} VPCs, {instances} instances")


def _routed_networks() -> list[tuple[ipaddress.IPv4Network, str]]:
    """Routed IPv4 networks that can be a VPC (AWS allows /16 to /28), one per virtual network first."""
    found: dict[ipaddress.IPv4Network, str] = {}
    for network, vnet_id in Route.objects.filter(
        virtual_network__isnull=False, virtual_network__deleted_at__isnull=True
    ).values_list("network", "virtual_network__cf_id"):
        try:
            parsed = ipaddress.ip_network(network, strict=False)
        except ValueError:
            continue
        if parsed.version == 4 and 16 <= parsed.prefixlen <= 28:
            found.setdefault(parsed, str(vnet_id))
    ordered = sorted(found.items(), key=lambda item: item[0])
    # One network of each virtual network before a second of any, so the estate spans them all.
    firsts: list[tuple[ipaddress.IPv4Network, str]] = []
    rest: list[tuple[ipaddress.IPv4Network, str]] = []
    vnets: set[str] = set()
    for net, vnet in ordered:
        (rest if vnet in vnets else firsts).append((net, vnet))
        vnets.add(vnet)
    return (firsts + rest)[:NETWORKS]


def _lay_network(ec2, index: int, network: ipaddress.IPv4Network, vnet_id: str) -> int:
    tags = [{"Key": TAG, "Value": "1"}, {"Key": "Name", "Value": f"demo-{index + 1}"}]
    vpc = ec2.create_vpc(CidrBlock=str(network), TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])["Vpc"][
        "VpcId"
    ]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(network), AvailabilityZone=f"{settings.AWS_REGION}a")["Subnet"][
        "SubnetId"
    ]
    # AWS keeps the first four addresses of a subnet and its last.
    first, last = network.network_address + 4, network.broadcast_address - 1
    busiest = (
        Origin.objects.filter(vnet_id=vnet_id, seen_in_traffic=True, protocol="TCP")
        .order_by("-sessions")
        .values_list("address", "port")[:500]
    )
    hosts: dict[str, int] = {}
    for address, port in busiest:
        if _between(address, first, last) and address not in hosts:
            hosts[address] = port
        if len(hosts) == HOSTS_WITH_TRAFFIC:
            break
    reached = set(Origin.objects.filter(vnet_id=vnet_id).values_list("address", flat=True)[:5000])
    addresses = (str(first + n) for n in range(int(last) - int(first) + 1))
    idle = next((a for a in addresses if a not in reached and a not in hosts), None)
    if idle is not None:
        hosts[idle] = 443
    groups: dict[int, str] = {}
    for number, (address, port) in enumerate(hosts.items(), start=1):
        if port not in groups:
            groups[port] = ec2.create_security_group(
                GroupName=f"demo-{port}", Description=f"port {port} from the corporate network", VpcId=vpc
            )["GroupId"]
            ec2.authorize_security_group_ingress(
                GroupId=groups[port],
                IpPermissions=[
                    {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}
                ],
            )
        name = f"{SERVICES.get(port, 'app')}-{index + 1}{number}" if address != idle else f"build-runner-{index + 1}"
        ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            PrivateIpAddress=address,
            SecurityGroupIds=[groups[port]],
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": name}]}],
        )
    return len(hosts)


def _between(address: str, first: ipaddress.IPv4Address, last: ipaddress.IPv4Address) -> bool:
    try:
        return first <= ipaddress.IPv4Address(address) <= last
    except ValueError:
        return False
