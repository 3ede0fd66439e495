"""Private routes that would capture more than a private network need an explicit, specific confirmation."""

import ipaddress
import uuid

import pytest
from django.urls import reverse

from tunnels import services
from tunnels.models import Tunnel, TunnelChange, VirtualNetwork


@pytest.fixture
def tunnel(db):
    return Tunnel.objects.create(cf_id=uuid.uuid4(), name="edge-1", status="healthy", status_rank=3)


@pytest.fixture
def vnet(db):
    return VirtualNetwork.objects.create(cf_id=uuid.uuid4(), name="prod-vpc", is_default=True)


def _add(client, tunnel, vnet, network, **extra):
    data = {"network": network, "virtual_network": str(vnet.cf_id), **extra}
    return client.post(reverse("tunnels:route_add", args=[tunnel.cf_id]), data)


@pytest.mark.parametrize(
    ("network", "named"),
    [
        ("0.0.0.0/0", "every IPv4 address"),
        ("::/0", "every IPv6 address"),
        ("fe80::/10", "link-local addresses"),
        ("169.254.0.0/16", "the cloud metadata service at 169.254.169.254"),
        ("127.0.0.0/8", "loopback addresses"),
        ("::1/128", "loopback addresses"),
        ("224.0.0.0/4", "multicast addresses"),
        ("ff00::/8", "multicast addresses"),
        ("0.0.0.0/1", "loopback addresses"),
        ("::ffff:0:0/96", "IPv4 addresses written as IPv6"),
    ],
)
def test_a_route_capturing_more_than_a_private_network_asks_for_a_confirmation_naming_it(
    operator_client, tunnel, vnet, network, named
):
    response = _add(operator_client, tunnel, vnet, network)
    assert response.status_code == 400, f"{network} was accepted without a word"
    page = response.content.decode()
    assert named in page
    assert f'name="confirm_network" value="{ipaddress.ip_network(network)}"' in page
    assert not TunnelChange.objects.exists()


def test_the_confirmed_route_is_asked_for(operator_client, tunnel, vnet):
    response = _add(operator_client, tunnel, vnet, "0.0.0.0/0", confirm_network="0.0.0.0/0")
    assert response.status_code == 302
    change = TunnelChange.objects.get()
    assert change.params["network"] == "0.0.0.0/0" and "every IPv4 address" in change.params["confirmed_capture"]


def test_a_confirmation_given_for_another_network_does_not_count(operator_client, tunnel, vnet):
    response = _add(operator_client, tunnel, vnet, "::/0", confirm_network="0.0.0.0/0")
    assert response.status_code == 400 and "every IPv6 address" in response.content.decode()
    response = _add(operator_client, tunnel, vnet, "0.0.0.0/0", confirm_network="on")
    assert response.status_code == 400
    assert not TunnelChange.objects.exists()


def test_an_ordinary_private_network_needs_no_confirmation(operator_client, tunnel, vnet):
    assert _add(operator_client, tunnel, vnet, "10.200.0.0/24").status_code == 302
    assert "confirmed_capture" not in TunnelChange.objects.get().params


def test_the_confirmation_text_is_escaped(operator_client, tunnel, vnet):
    page = _add(operator_client, tunnel, vnet, "0.0.0.0/0", comment="<script>x</script>").content.decode()
    assert "<script>x</script>" not in page


@pytest.mark.parametrize(
    ("network", "captures"),
    [
        ("10.0.0.0/8", ""),
        ("172.16.0.0/12", ""),
        ("fc00::/7", ""),
        ("2001:db8::/32", ""),
        ("8.0.0.0/7", "33,554,432 addresses, public ones among them"),
        ("2000::/3", "public ones among them"),
        ("128.0.0.0/1", "link-local addresses, the cloud metadata service"),
    ],
)
def test_what_a_route_captures_besides_a_private_network(network, captures):
    described = services.route_capture(network)
    assert (captures in described) if captures else described == ""
