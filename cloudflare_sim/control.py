"""Operating the simulator: stats, faults and world events.

The same functions serve the HTTP control endpoints under /__sim__/ and the CLI when it is pointed at a state
file, so both routes change one shared world.
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

from cloudflare_sim import alerting, faults, world
from cloudflare_sim.store import Doc, Store

if TYPE_CHECKING:
    from cloudflare_sim.app import SimulatorApp

EVENTS = ("connector-down", "tunnel-down", "degrade", "recover", "tick")


def find_tunnel(store: Store, ref: str) -> Doc:
    """A live tunnel by id or by name, in any account of the state file."""
    for account_id in store.accounts():
        tunnel = store.get("tunnel", ref, account_id)
        if tunnel is not None and tunnel["deleted_at"] is None:
            return tunnel
        for tunnel in store.list("tunnel", account_id):
            if tunnel["name"] == ref and tunnel["deleted_at"] is None:
                return tunnel
    raise LookupError(f"no tunnel with id or name {ref!r}")


def run_event(
    store: Store,
    event: str,
    now: float,
    *,
    tunnel: str | None = None,
    connector: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Force one event now; returns the tunnel's new status (or, for a tick, what the clock did)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}; choose one of {', '.join(EVENTS)}")
    if event == "tick":
        return {"event": event, "happened": world.tick(store, now, seed)}
    if not tunnel:
        raise ValueError(f"{event} needs a tunnel (id or name)")
    doc = find_tunnel(store, tunnel)
    rng = random.Random(f"{seed}:{event}:{doc['id']}:{now}")  # noqa: S311 - simulated events
    if event == "connector-down":
        doc = world.connector_down(store, doc, now, connector)
    elif event == "tunnel-down":
        doc = world.tunnel_down(store, doc, now)
    elif event == "degrade":
        doc = world.degrade(store, doc, now)
    else:
        doc = world.recover(store, doc, now, rng)
    return {"event": event, "tunnel_id": doc["id"], "name": doc["name"], "status": doc["status"]}


def handle(
    app: SimulatorApp, method: str, path: str, query: dict[str, list[str]], body: bytes
) -> tuple[int, Any]:
    store = app.store
    try:
        payload = json.loads(body) if body.strip() else {}
    except ValueError:
        return 400, {"error": "malformed JSON"}
    try:
        if path == "/stats" and method == "GET":
            return 200, store.stats()
        if path == "/stats/reset" and method == "POST":
            store.reset_stats(world.iso(app.clock()))
            return 200, store.stats()
        if path == "/faults" and method == "GET":
            return 200, faults.load(store)
        if path == "/faults" and method == "PUT":
            return 200, faults.save(store, payload)
        if path == "/faults" and method == "DELETE":
            return 200, faults.clear(store)
        if path == "/events" and method == "POST":
            return 200, run_event(
                store,
                payload.get("event", ""),
                app.clock(),
                tunnel=payload.get("tunnel"),
                connector=payload.get("connector"),
                seed=app.seed,
            )
        if path == "/webhooks" and method == "GET":
            return 200, alerting.delivery_stats(store)
        if path == "/health" and method == "GET":
            return 200, {"ok": True, "accounts": store.accounts()}
    except LookupError as error:
        return 404, {"error": str(error)}
    except ValueError as error:
        return 400, {"error": str(error)}
    return 404, {"error": f"no control endpoint {method} {path}"}
