"""Secrets Gatehouse keeps only to show once or to present later, sealed (Fernet) under a key derived from SECRET_KEY.

Each purpose has its own key, so a value sealed for one cannot be opened as another. The key material is what
each kind of secret has been sealed under from the start: changing a purpose's salt, or SECRET_KEY, makes every
value already sealed for it unreadable.
"""

import base64
import hashlib
from enum import Enum, auto

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class Purpose(Enum):
    SERVICE_TOKEN = auto()  # a vendor's service-token client secret, until shown once
    PUSH_WEBHOOK = auto()  # the secret Cloudflare presents on push events to tunnels
    TUNNEL_TOKEN = auto()  # a new tunnel's token, until its creator has seen it
    ALERT_WEBHOOK = auto()  # a webhook channel's signing secret


# The push connection's secret has always been sealed under the service-token key.
_SALTS = {
    Purpose.SERVICE_TOKEN: b"gatehouse.vendors.service-token:",
    Purpose.PUSH_WEBHOOK: b"gatehouse.vendors.service-token:",
    Purpose.TUNNEL_TOKEN: b"gatehouse tunnel token\0",
    Purpose.ALERT_WEBHOOK: b"gatehouse alert webhook secret\0",
}


class Unreadable(ValueError):
    """The sealed value does not open: sealed for another purpose, damaged, or SECRET_KEY has changed since."""


def _fernet(purpose: Purpose) -> Fernet:
    key = hashlib.sha256(_SALTS[purpose] + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret: str, *, purpose: Purpose) -> str:
    return _fernet(purpose).encrypt(secret.encode()).decode()


def unseal(sealed: str, *, purpose: Purpose) -> str:
    try:
        return _fernet(purpose).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise Unreadable(f"a sealed {purpose.name.lower()} does not open") from None
