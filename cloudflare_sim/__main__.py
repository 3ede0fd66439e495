"""python -m cloudflare_sim serve|seed|event|faults|stats|logpush — see cloudflare_sim/README.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.request
from typing import Any

DEFAULT_STATE = "var/cloudflare_sim.sqlite3"


def _call(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    if not url.startswith(("http://", "https://")):
        raise SystemExit(f"--url must be an http(s) URL, not {url!r}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url.rstrip("/") + "/__sim__" + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the scheme is checked above
        return json.loads(response.read())


def _store(args: argparse.Namespace):
    from cloudflare_sim.store import Store

    return Store(args.state)


def cmd_serve(args: argparse.Namespace) -> int:
    from cloudflare_sim.server import serve

    token = args.token or os.environ.get("CLOUDFLARE_API_TOKEN")
    if not token:
        print("serve needs --token or CLOUDFLARE_API_TOKEN", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    serve(
        args.state,
        token,
        args.host,
        args.port,
        seed=args.seed,
        clock_interval=None if args.no_clock else args.tick,
    )
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from cloudflare_sim import seed

    store = _store(args)
    if args.tunnels:
        summary = seed.seed_scale(store, time.time(), args.tunnels, args.seed)
    else:
        summary = seed.seed_demo(store, time.time(), args.seed)
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"account {summary['account_id']} ({summary['account_name']}): {summary['tunnels']} tunnels, "
            f"zones {', '.join(z['name'] + ' ' + z['id'] for z in summary['zones'])}"
        )
    return 0


def cmd_event(args: argparse.Namespace) -> int:
    body = {"event": args.event, "tunnel": args.tunnel, "connector": args.connector}
    if args.url:
        result = _call(args.url, "POST", "/events", body)
    else:
        from cloudflare_sim import alerting, control

        store = _store(args)
        try:
            result = control.run_event(
                store,
                args.event,
                time.time(),
                tunnel=args.tunnel,
                connector=args.connector,
                seed=args.seed,
            )
        except (LookupError, ValueError) as error:
            print(error, file=sys.stderr)
            return 1
        # The notifications this event sent are posted before the command returns.
        alerting.flush(store)
    print(json.dumps(result))
    return 0


def _fault_config(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any]:
    rule = {
        k: v
        for k, v in {
            "endpoint": args.endpoint,
            "latency_ms": args.latency_ms,
            "error_rate": args.error_rate,
            "error_status": args.error_status,
            "timeout_s": args.timeout_s,
        }.items()
        if v is not None
    }
    config = {
        "rules": list(current["rules"]),
        "rate_limit": dict(current["rate_limit"]),
        "max_per_page": dict(current.get("max_per_page", {})),
        "webhooks": dict(current.get("webhooks", {})),
    }
    if set(rule) - {"endpoint"}:
        config["rules"].append(rule)
    if args.rate_limit is not None:
        config["rate_limit"]["limit"] = args.rate_limit
    if args.rate_window is not None:
        config["rate_limit"]["window"] = args.rate_window
    if args.webhook_drop_rate is not None:
        config["webhooks"]["drop_rate"] = args.webhook_drop_rate
    if args.webhook_delay_s is not None:
        config["webhooks"]["delay_s"] = args.webhook_delay_s
    return config


def cmd_faults(args: argparse.Namespace) -> int:
    from cloudflare_sim import faults

    if args.url:
        current = _call(args.url, "DELETE" if args.action == "clear" else "GET", "/faults")
        if args.action == "add":
            current = _call(args.url, "PUT", "/faults", _fault_config(args, current))
    else:
        store = _store(args)
        current = faults.clear(store) if args.action == "clear" else faults.load(store)
        if args.action == "add":
            try:
                current = faults.save(store, _fault_config(args, current))
            except ValueError as error:
                print(error, file=sys.stderr)
                return 1
    print(json.dumps(current, indent=2))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    if args.url:
        result = _call(args.url, "POST", "/stats/reset") if args.reset else _call(args.url, "GET", "/stats")
    else:
        from cloudflare_sim.world import iso

        store = _store(args)
        if args.reset:
            store.reset_stats(iso(time.time()))
        result = store.stats()
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cloudflare_sim", description="Cloudflare API simulator")
    sub = parser.add_subparsers(dest="command", required=True)

    def target(p: argparse.ArgumentParser, url: bool = True) -> None:
        p.add_argument(
            "--state",
            default=os.environ.get("CLOUDFLARE_SIM_STATE", DEFAULT_STATE),
            help="the SQLite state file (default: $CLOUDFLARE_SIM_STATE or %(default)s)",
        )
        if url:
            p.add_argument(
                "--url", help="a running simulator, e.g. http://127.0.0.1:8787 (instead of --state)"
            )
        p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("serve", help="serve /client/v4 over HTTP")
    target(p, url=False)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--token", help="the accepted API token (default: $CLOUDFLARE_API_TOKEN)")
    p.add_argument("--tick", type=float, default=10.0, help="seconds between world clock ticks")
    p.add_argument("--no-clock", action="store_true", help="keep the world still unless events are forced")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("seed", help="replace the state with a demo company or a fleet of N tunnels")
    target(p, url=False)
    p.add_argument("--scenario", choices=["demo"], default="demo")
    p.add_argument("--tunnels", type=int, help="build a scale account with this many tunnels instead")
    p.add_argument("--json", action="store_true", help="print the account, zones and counts as JSON")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("event", help="force a world event now")
    target(p)
    p.add_argument("event", choices=["connector-down", "tunnel-down", "degrade", "recover", "tick"])
    p.add_argument("--tunnel", help="tunnel id or name")
    p.add_argument("--connector", help="connector id (connector-down; default: the first running one)")
    p.set_defaults(func=cmd_event)

    p = sub.add_parser("faults", help="show, add or clear faults")
    target(p)
    p.add_argument("action", choices=["show", "add", "clear"], nargs="?", default="show")
    p.add_argument("--endpoint", help='endpoint pattern, e.g. "GET /accounts/{account_id}/cfd_tunnel*"')
    p.add_argument("--latency-ms", type=float)
    p.add_argument("--error-rate", type=float, help="probability of a 5xx answer, 0..1")
    p.add_argument("--error-status", type=int)
    p.add_argument("--timeout-s", type=float, help="hold matching requests this long, then answer 504")
    p.add_argument("--rate-limit", type=int, help="requests per window per token (Cloudflare: 1200)")
    p.add_argument("--rate-window", type=float, help="window length in seconds (Cloudflare: 300)")
    p.add_argument("--webhook-drop-rate", type=float, help="probability that a notification is never sent, 0..1")
    p.add_argument("--webhook-delay-s", type=float, help="post notifications this many seconds late")
    p.set_defaults(func=cmd_faults)

    p = sub.add_parser("stats", help="calls per endpoint and status since the last reset")
    target(p)
    p.add_argument("--reset", action="store_true")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["logpush"]:
        from cloudflare_sim import logpush

        return logpush.main(argv[1:])
    args = build_parser().parse_args(argv)
    state_dir = os.path.dirname(getattr(args, "state", "") or "")
    if state_dir and not getattr(args, "url", None):
        os.makedirs(state_dir, exist_ok=True)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
