"""What Gatehouse reads from Cloudflare, as small frozen records.

`integrations/cloudflare.py` builds each record once from the SDK's own response model; callers read attributes
and never see the SDK's types or a raw dict. Everything Cloudflare sends is untrusted text: every string is cut
to the length Gatehouse stores and cleared of control and bidirectional-override characters (so one name cannot
be made to look like another), and every missing field gets its default here, in one place.
"""

import re
from datetime import datetime
from typing import Any

# C0/C1 controls, and the bidirectional embeddings, overrides and isolates (U+202A to U+202E, U+2066 to U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def text(value: Any, limit: int) -> str:
    """`value` as a plain one-line string of at most `limit` characters ("" for None)."""
    if value is None:
        return ""
    return _UNSAFE.sub("", str(value))[:limit]


def timestamp(value: Any) -> datetime | None:
    """A timezone-aware datetime, or None for anything else (the SDK parses ISO 8601 strings already)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else None
    return None


def field(model: Any, name: str, default: Any = None) -> Any:
    """One field of an SDK model (or of a plain mapping, as in an application's inline policies)."""
    if isinstance(model, dict):
        return model.get(name, default)
    value = getattr(model, name, default)
    return default if value is None else value


# --- Tunnels, connectors, routes, virtual networks, zones and DNS records --------------------------------------


# --- Access: applications, policies, service tokens, groups, users and sessions --------------------------------
