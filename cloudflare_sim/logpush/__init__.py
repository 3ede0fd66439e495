"""Network-session logs delivered to S3 the way Cloudflare Logpush delivers them.

Each object is gzipped NDJSON, one record per line, under Logpush's daily-folder layout::

    {prefix}/{YYYYMMDD}/{start}_{end}_{8 hex}.log.gz      start/end as YYYYMMDDTHHMMSSZ (UTC)

The date folder is the one Logpush substitutes for ``{DATE}`` in a destination path, and start/end bound the
batch. Timestamps are integers in Unix nanoseconds because that is Logpush's default ``timestamp_format``;
``timestamps="rfc3339"`` (or ``unix``) gives what a job configured that way sends.

The traffic is shaped like a real account's (:mod:`.population`): private origins in a few virtual networks,
some of which overlap, and users at the company's domains and at vendor domains; more traffic in working hours
(:mod:`.plan`); a few dead origins whose sessions end in ``ORIGIN_UNREACHABLE``. Exact shares of the lines are
what an ingester has to refuse: sessions to public destinations, and malformed lines (:mod:`.corrupt`).
Everything is a pure function of the seed and the arguments, so a test can regenerate precisely what was written
with :func:`generate_records` (:mod:`.render`).

Memory stays flat whatever the volume: lines are produced lazily and each object is compressed into one
reusable temporary file before it is uploaded (:mod:`.upload`). :mod:`.cli` is ``python -m cloudflare_sim logpush``.
"""

from cloudflare_sim.logpush.cli import main
from cloudflare_sim.logpush.corrupt import MALFORMED_REASONS
from cloudflare_sim.logpush.plan import plan_objects
from cloudflare_sim.logpush.records import (
    FIELDS,
    GATEWAY_NETWORK,
    MALFORMED,
    PUBLIC,
    VALID,
    ZERO_TRUST_NETWORK_SESSIONS,
)
from cloudflare_sim.logpush.render import generate_records
from cloudflare_sim.logpush.upload import s3_client_from_environment, write_logpush

__all__ = [
    "FIELDS",
    "GATEWAY_NETWORK",
    "MALFORMED",
    "MALFORMED_REASONS",
    "PUBLIC",
    "VALID",
    "ZERO_TRUST_NETWORK_SESSIONS",
    "generate_records",
    "main",
    "plan_objects",
    "s3_client_from_environment",
    "write_logpush",
]
