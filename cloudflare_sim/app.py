"""The simulator as a WSGI application: routing, the v4 envelope, auth, faults, rate limit and counters.

`make_app(state_path, token)` serves `/client/v4/...` like api.cloudflare.com and `/__sim__/...` for control.
Mount it on `httpx.WSGITransport` for in-process tests, or serve it with `python -m cloudflare_sim serve`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cloudflare_sim import control, faults
from cloudflare_sim.store import Store

API_PREFIX = "/client/v4"
CONTROL_PREFIX = "/__sim__"
ID32 = re.compile(r"^[0-9a-f]{32}\Z")
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ApiError(Exception):
    """An error answered in Cloudflare's shape: HTTP status plus errors[{code, message}]."""

    def __init__(self, status: int, code: int, message: str, pointer: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.pointer = status, code, message, pointer

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.pointer:
            error["source"] = {"pointer": self.pointer}
        return {"success": False, "errors": [error], "messages": [], "result": None}


def bad_request(message: str, code: int = 1001, pointer: str | None = None) -> ApiError:
    return ApiError(400, code, message, pointer)


def not_found(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"{what} not found")


@dataclass
class Reply:
    result: Any
    status: int = 200
    result_info: dict[str, Any] | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    raw_body: bytes
    store: Store
    now: float
    rng: random.Random
    params: dict[str, str] = field(default_factory=dict)
    # A page size set through the fault configuration, below the list's own maximum (None: no extra cap).
    page_cap: int | None = None

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def q_list(self, name: str) -> list[str]:
        """Repeated (`a=x&a=y`) and comma-separated (`a=x,y`) forms both occur; accept either."""
        return [part for value in self.query.get(name, []) for part in value.split(",") if part]

    def q_bool(self, name: str) -> bool | None:
        value = self.q(name)
        if value is None:
            return None
        if value.lower() not in ("true", "false"):
            raise bad_request(f"{name} must be true or false")
        return value.lower() == "true"

    def q_int(self, name: str, default: int) -> int:
        value = self.q(name)
        if value is None:
            return default
        try:
            return int(float(value))
        except ValueError:
            raise bad_request(f"{name} must be a number") from None

    def json(self) -> dict[str, Any]:
        if not self.raw_body.strip():
            return {}
        try:
            body = json.loads(self.raw_body)
        except ValueError:
            raise bad_request("Malformed JSON in request body", code=10026) from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object", code=10026)
        return body

    @property
    def account_id(self) -> str:
        return self.params["account_id"]


def paginate(req: Request, items: list[Any], *, default_per_page: int, max_per_page: int) -> Reply:
    """page/per_page paging that answers an empty page past the end: that is what stops the SDK.

    Like Cloudflare, a per_page above the list's maximum is served at the maximum, and result_info says so.
    """
    page = req.q_int("page", 1)
    per_page = req.q_int("per_page", default_per_page)
    if page < 1 or per_page < 1:
        raise bad_request("page and per_page must be positive")
    per_page = min(per_page, max_per_page, req.page_cap or max_per_page)
    chunk = items[(page - 1) * per_page : page * per_page]
    return Reply(
        chunk,
        result_info={
            "page": page,
            "per_page": per_page,
            "count": len(chunk),
            "total_count": len(items),
            "total_pages": math.ceil(len(items) / per_page),
        },
    )


Handler = Callable[..., Reply]


@dataclass
class Route:
    method: str
    template: str
    handler: Handler
    regex: re.Pattern[str]

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


ROUTES: list[Route] = []


def route(method: str, template: str) -> Callable[[Handler], Handler]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)

    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, template, handler, re.compile(f"^{pattern}$")))
        return handler

    return register


def _load_endpoints() -> None:
    # Importing the endpoint modules registers their routes.
    from cloudflare_sim import endpoints_access, endpoints_alerting, endpoints_networks  # noqa: F401


def token_key(token: str) -> str:
    """Rate-limit windows are keyed by a digest so the state file never holds a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class SimulatorApp:
    def __init__(
        self,
        state_path: str,
        token: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        seed: int = 0,
    ):
        _load_endpoints()
        self.store = Store(state_path)
        self.token = token
        self.clock = clock
        self.sleep = sleep
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - simulated faults, not secrets

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"].upper()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if path.startswith(CONTROL_PREFIX + "/"):
            status, payload = control.handle(self, method, path[len(CONTROL_PREFIX) :], query, body)
            return self._send(start_response, status, payload, {}, started)
        status, payload, headers = self._api(environ, method, path, query, body)
        return self._send(start_response, status, payload, headers, started)

    def _send(
        self,
        start_response: Callable[..., Any],
        status: int,
        payload: Any,
        headers: dict[str, str],
        started: float,
    ) -> list[bytes]:
        data = json.dumps(payload, separators=(",", ":")).encode()
        elapsed_ms = (time.perf_counter() - started) * 1000
        response_headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Server-Timing", f"app;dur={elapsed_ms:.2f}"),
            *headers.items(),
        ]
        start_response(f"{status} {STATUS_TEXT.get(status, 'Unknown')}", response_headers)
        return [data]

    def _api(
        self, environ: dict[str, Any], method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        now = self.clock()
        headers = {"cf-ray": f"{uuid.uuid4().hex[:16]}-SIM"}
        matched, endpoint = self._match(method, path)
        try:
            if not path.startswith(API_PREFIX + "/"):
                raise ApiError(404, 7000, "No route for that URI")
            self._authenticate(environ)
            config = faults.load(self.store)
            self._rate_limit(config, now, headers)
            self._apply_faults(config, endpoint)
            if matched is None:
                raise ApiError(
                    405 if endpoint else 404,
                    7001 if endpoint else 7000,
                    "Method not allowed for this endpoint" if endpoint else "No route for that URI",
                )
            route_, params = matched
            req = Request(
                method, path, query, body, self.store, now, self.rng, params, faults.page_cap(config, endpoint)
            )
            self._check_scope(req)
            reply = route_.handler(req, **params)
            payload: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": reply.result}
            if reply.result_info is not None:
                payload["result_info"] = reply.result_info
            status = reply.status
        except ApiError as error:
            status, payload = error.status, error.body()
        self.store.count_call(endpoint or f"{method} (unrouted)", status)
        return status, payload, headers

    def _match(self, method: str, path: str) -> tuple[tuple[Route, dict[str, str]] | None, str | None]:
        """The route for this request, and the endpoint name to count it under (even for a wrong method)."""
        sub = path[len(API_PREFIX) :]
        name = None
        for candidate in ROUTES:
            found = candidate.regex.match(sub)
            if found:
                if candidate.method == method:
                    return (candidate, found.groupdict()), candidate.name
                name = name or f"{method} {candidate.template}"
        return None, name

    def _authenticate(self, environ: dict[str, Any]) -> None:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise ApiError(401, 9106, "Missing X-Auth-Key, X-Auth-Email or Authorization headers")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError(400, 6111, "Invalid format for Authorization header")
        if presented.strip() != self.token:
            raise ApiError(403, 10000, "Authentication error")

    def _rate_limit(self, config: dict[str, Any], now: float, headers: dict[str, str]) -> None:
        limit, window = config["rate_limit"]["limit"], config["rate_limit"]["window"]
        allowed, remaining, reset = self.store.take_rate_token(token_key(self.token), now, limit, window)
        headers["Ratelimit"] = f'"default";r={remaining};t={math.ceil(reset)}'
        headers["Ratelimit-Policy"] = f'"default";q={limit};w={int(window)}'
        if not allowed:
            headers["Retry-After"] = str(max(math.ceil(reset), 1))
            raise ApiError(429, 971, "Please wait and consider throttling your request speed")

    def _apply_faults(self, config: dict[str, Any], endpoint: str | None) -> None:
        if endpoint is None or not config["rules"]:
            return
        effect = faults.effect_for(config, endpoint)
        if effect.latency_ms:
            self.sleep(effect.latency_ms / 1000)
        if effect.timeout_s:
            self.sleep(effect.timeout_s)
            raise ApiError(504, 10000, "Gateway timeout: the origin did not answer in time")
        if effect.error_rate and self.rng.random() < effect.error_rate:
            raise ApiError(effect.error_status, 10000, "Internal server error")

    def _check_scope(self, req: Request) -> None:
        account_id = req.params.get("account_id")
        if account_id is not None:
            if not ID32.match(account_id):
                raise ApiError(
                    400,
                    7003,
                    f"Could not route to {req.path[len(API_PREFIX) :]}, perhaps your object "
                    "identifier is invalid?",
                )
            if self.store.get("account", account_id) is None:
                raise ApiError(403, 9109, "Unauthorized to access requested resource")
        zone_id = req.params.get("zone_id")
        if zone_id is not None:
            if not ID32.match(zone_id):
                raise ApiError(
                    400,
                    7003,
                    f"Could not route to {req.path[len(API_PREFIX) :]}, perhaps your object "
                    "identifier is invalid?",
                )
            if self.store.get("zone", zone_id) is None:
                raise ApiError(404, 1001, "Invalid zone identifier")


def make_app(
    state_path: str,
    token: str,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    seed: int = 0,
) -> SimulatorApp:
    """The WSGI app over a state file; `clock` and `sleep` let tests move time instead of waiting for it."""
    return SimulatorApp(state_path, token, clock=clock, sleep=sleep, seed=seed)
