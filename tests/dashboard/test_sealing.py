import base64
import hashlib

import pytest
from cryptography.fernet import Fernet

from dashboard.sealing import Purpose, Unreadable, seal, unseal


def _sealed_as_before(key_material: bytes, secret: str) -> str:
    """How each app sealed its secrets before sealing had one home, written out so a changed salt shows here."""
    key = hashlib.sha256(key_material).digest()
    return Fernet(base64.urlsafe_b64encode(key)).encrypt(secret.encode()).decode()


@pytest.mark.parametrize(
    ("purpose", "material"),
    [
        (Purpose.SERVICE_TOKEN, lambda key: f"gatehouse.vendors.service-token:{key}".encode()),
        (Purpose.PUSH_WEBHOOK, lambda key: f"gatehouse.vendors.service-token:{key}".encode()),
        (Purpose.TUNNEL_TOKEN, lambda key: b"gatehouse tunnel token\0" + key.encode()),
        (Purpose.ALERT_WEBHOOK, lambda key: b"gatehouse alert webhook secret\0" + key.encode()),
    ],
)
def test_values_sealed_before_sealing_moved_still_open(settings, purpose, material):
    sealed = _sealed_as_before(material(settings.SECRET_KEY), "the-secret")
    assert unseal(sealed, purpose=purpose) == "the-secret"


def test_a_sealed_value_opens_for_its_own_purpose_and_hides_the_secret():
    sealed = seal("the-secret", purpose=Purpose.TUNNEL_TOKEN)
    assert "the-secret" not in sealed
    assert unseal(sealed, purpose=Purpose.TUNNEL_TOKEN) == "the-secret"


def test_a_value_sealed_for_one_purpose_does_not_open_as_another():
    sealed = seal("the-secret", purpose=Purpose.TUNNEL_TOKEN)
    with pytest.raises(Unreadable):
        unseal(sealed, purpose=Purpose.ALERT_WEBHOOK)


def test_a_changed_secret_key_makes_sealed_values_unreadable(settings):
    sealed = seal("the-secret", purpose=Purpose.SERVICE_TOKEN)
    settings.SECRET_KEY = settings.SECRET_KEY + "-rotated"
    with pytest.raises(Unreadable):
        unseal(sealed, purpose=Purpose.SERVICE_TOKEN)


@pytest.mark.parametrize("purpose", list(Purpose))
def test_a_value_sealed_now_opens_only_for_its_own_purpose(purpose):
    sealed = seal("the-secret", purpose=purpose)
    assert unseal(sealed, purpose=purpose) == "the-secret"
    for other in Purpose:
        if other is not purpose:
            with pytest.raises(Unreadable):
                unseal(sealed, purpose=other)
                pytest.fail(f"a value sealed as {purpose.name} opened as {other.name}")
