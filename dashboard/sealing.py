"""Secrets Gatehouse keeps only to show once or to present later, sealed (Fernet) under a key derived from SECRET_KEY.

Each purpose has its own key, derived with HKDF-SHA256 from SECRET_KEY with the purpose's name as the info, so a
value sealed for one cannot be opened as another. Values sealed before this derivation stay readable: each
purpose also opens (never seals) with the key it used to be sealed under. Those older keys were SHA-256 over a
salt and SECRET_KEY, and the push connection's secret shared the service-token key, so until that secret is
sealed again (disconnecting and connecting push events makes a new one) such an older value opens for both
of those purposes. Changing SECRET_KEY makes every value already sealed unreadable.
"""

import base64
import hashlib
from enum import Enum, auto

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


class Purpose(Enum):
    SERVICE_TOKEN = auto()  # a vendor's service-token client secret, until shown once
    PUSH_WEBHOOK = auto()  # the secret Cloudflare presents on push events to tunnels
    TUNNEL_TOKEN = auto()  # a new tunnel's token, until its creator has seen it
    ALERT_WEBHOOK = auto()  # a webhook channel's signing secret


_HKDF_SALT = b"gatehouse sealing"

# What each purpose was sealed under before the HKDF keys: SHA-256 of this salt and SECRET_KEY. Opening only.
# The push connection's secret was sealed under the service-token key.
_LEGACY_SALTS = {
    Purpose.SERVICE_TOKEN: b"gatehouse.vendors.service-token:",
    Purpose.PUSH_WEBHOOK: b"gatehouse.vendors.service-token:",
    Purpose.TUNNEL_TOKEN: b"gatehouse tunnel token\0",
    Purpose.ALERT_WEBHOOK: b"gatehouse alert webhook secret\0",
}


class Unreadable(ValueError):
    """The sealed value does not open: sealed for another purpose, damaged, or SECRET_KEY has changed since."""


def _key(purpose: Purpose) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=purpose.name.encode()).derive(
        settings.SECRET_KEY.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _legacy_key(purpose: Purpose) -> Fernet:
    key = hashlib.sha256(_LEGACY_SALTS[purpose] + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, *, purpose: Purpose) -> str:
    return _key(purpose).encrypt(secret.encode()).decode()


def unseal(sealed: str, *, purpose: Purpose) -> str:
    try:
        return MultiFernet([_key(purpose), _legacy_key(purpose)]).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise Unreadable(f"a sealed {purpose.name.lower()} does not open") from None
