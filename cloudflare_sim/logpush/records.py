"""What Logpush writes: the two network-session datasets, their fields in order, and the kinds of line."""

import json
from typing import Any, NamedTuple

ZERO_TRUST_NETWORK_SESSIONS = "zero_trust_network_sessions"
GATEWAY_NETWORK = "gateway_network"
DATASETS = (ZERO_TRUST_NETWORK_SESSIONS, GATEWAY_NETWORK)
TIMESTAMP_FORMATS = ("unixnano", "unix", "rfc3339")

VALID = "valid"
PUBLIC = "public"
MALFORMED = "malformed"

# Every field each dataset's lines carry, in the order they are written.
FIELDS: dict[str, tuple[str, ...]] = {
    ZERO_TRUST_NETWORK_SESSIONS: (
        "AccountID",
        "SessionID",
        "SessionStartTime",
        "SessionEndTime",
        "SourceIP",
        "SourcePort",
        "OriginIP",
        "OriginPort",
        "Protocol",
        "DetectedProtocol",
        "Offramp",
        "DestinationTunnelID",
        "VirtualNetworkID",
        "EgressColoName",
        "EgressIP",
        "EgressPort",
        "EgressRuleID",
        "EgressRuleName",
        "Email",
        "UserID",
        "DeviceID",
        "DeviceName",
        "RegistrationID",
        "SourceInternalIP",
        "IngressColoName",
        "BytesSent",
        "BytesReceived",
        "ConnectionCloseReason",
        "ConnectionReuse",
        "ClientTCPHandshakeDurationMs",
        "ClientTLSCipher",
        "ClientTLSHandshakeDurationMs",
        "ClientTLSVersion",
        "OriginTLSCertificateIssuer",
        "OriginTLSCertificateValidationResult",
        "OriginTLSCipher",
        "OriginTLSHandshakeDurationMs",
        "OriginTLSVersion",
        "RuleEvaluationDurationMs",
    ),
    GATEWAY_NETWORK: (
        "AccountID",
        "SessionID",
        "Datetime",
        "Action",
        "PolicyID",
        "PolicyName",
        "SourceIP",
        "SourcePort",
        "DestinationIP",
        "DestinationPort",
        "TransportProtocol",
        "DetectedProtocol",
        "SNI",
        "DestinationIPCountryCode",
        "DestinationIPContinentCode",
        "VirtualNetworkID",
        "VirtualNetworkName",
        "OverrideIP",
        "OverridePort",
        "ProxyEndpoint",
        "SourceIPCountryCode",
        "SourceIPContinentCode",
        "Email",
        "UserID",
        "DeviceID",
        "DeviceName",
        "SourceInternalIP",
        "ApplicationIDs",
        "ApplicationNames",
        "CategoryIDs",
        "CategoryNames",
    ),
}


class Line(NamedTuple):
    """One line as written (without its newline); ``reason`` says how a malformed line is broken."""

    kind: str
    data: bytes
    reason: str = ""

    def record(self) -> dict[str, Any] | None:
        """The parsed record, or None for a malformed line."""
        if self.kind == MALFORMED:
            return None
        return json.loads(self.data)
