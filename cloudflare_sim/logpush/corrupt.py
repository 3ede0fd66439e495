"""Malformed lines: well-formed records damaged in each of the ways an ingester must survive."""

import json

from cloudflare_sim.logpush.records import GATEWAY_NETWORK, ZERO_TRUST_NETWORK_SESSIONS

# The fields that name the destination, per dataset: what malformed lines corrupt.
_DEST_IP = {ZERO_TRUST_NETWORK_SESSIONS: "OriginIP", GATEWAY_NETWORK: "DestinationIP"}
_DEST_PORT = {ZERO_TRUST_NETWORK_SESSIONS: "OriginPort", GATEWAY_NETWORK: "DestinationPort"}
_TIME = {ZERO_TRUST_NETWORK_SESSIONS: "SessionStartTime", GATEWAY_NETWORK: "Datetime"}

MALFORMED_REASONS = (
    "truncated",
    "port_not_a_number",
    "port_negative",
    "port_out_of_range",
    "ip_not_an_address",
    "ip_wrong_type",
    "missing_destination",
    "time_not_a_time",
    "absurd_bytes",
    "script_in_identity",
    "oversized_field",
    "not_utf8",
    "json_array",
    "json_null",
)


def break_line(data: bytes, reason: str, dataset: str) -> bytes:
    """A well-formed line damaged in one of the ways an ingester must survive."""
    if reason == "truncated":
        return data[: len(data) // 2]
    if reason == "not_utf8":
        return data.replace(b'"Email":"', b'"Email":"\xff\xfe\xc3(', 1)
    record = json.loads(data)
    port, ip = _DEST_PORT[dataset], _DEST_IP[dataset]
    if reason == "port_not_a_number":
        record[port] = "abc"
    elif reason == "port_negative":
        record[port] = -5
    elif reason == "port_out_of_range":
        record[port] = 70000
    elif reason == "ip_not_an_address":
        record[ip] = "10.0.0.300"
    elif reason == "ip_wrong_type":
        record[ip] = 167772161
    elif reason == "missing_destination":
        del record[ip]
        del record[port]
    elif reason == "time_not_a_time":
        record[_TIME[dataset]] = "yesterday afternoon"
    elif reason == "absurd_bytes":
        if dataset == ZERO_TRUST_NETWORK_SESSIONS:
            record["BytesSent"] = 10**20
        else:
            record[port] = 10**20
    elif reason == "script_in_identity":
        record["Email"] = "<script>alert(1)</script>"
        record["DeviceName"] = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    elif reason == "oversized_field":
        record["DeviceName"] = "A" * 100_000
    elif reason == "json_array":
        return json.dumps(list(record.values()), separators=(",", ":")).encode()
    elif reason == "json_null":
        return b"null"
    else:
        raise ValueError(f"unknown malformed reason {reason!r}")
    return json.dumps(record, separators=(",", ":")).encode()
