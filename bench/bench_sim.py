"""How long the simulator takes to list 1,000 tunnels, in-process (WSGI) and over HTTP.

Run: .venv/bin/python bench/bench_sim.py
Server time is the simulator's own `Server-Timing: app;dur=` figure: what a Gatehouse benchmark pays for the
simulator on each call. The target is under 50 ms for a page of 1,000 tunnels.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from cloudflare_sim.app import make_app
from cloudflare_sim.seed import seed_scale
from cloudflare_sim.server import make_http_server

TOKEN = "bench-token"  # noqa: S105 - the throwaway token of a throwaway simulator
ROUNDS = 30


def server_ms(response: httpx.Response) -> float:
    return float(response.headers["Server-Timing"].split("dur=")[1])


def measure(client: httpx.Client, account_id: str) -> tuple[list[float], list[float]]:
    server, wall = [], []
    url = f"/client/v4/accounts/{account_id}/cfd_tunnel"
    for _ in range(ROUNDS):
        started = time.perf_counter()
        response = client.get(url, params={"per_page": 1000, "is_deleted": "false"})
        wall.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        assert len(response.json()["result"]) == 1000
        server.append(server_ms(response))
    return server, wall


def report(label: str, server: list[float], wall: list[float]) -> None:
    print(
        f"{label:<34} server median {statistics.median(server):6.1f} ms  p95 "
        f"{sorted(server)[int(len(server) * 0.95) - 1]:6.1f} ms  | client wall median "
        f"{statistics.median(wall):6.1f} ms"
    )


def main() -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    worst = 0.0
    for tunnels in (1000, 2000):
        with tempfile.TemporaryDirectory() as tmp:
            app = make_app(str(Path(tmp) / "bench.sqlite3"), TOKEN)
            started = time.perf_counter()
            summary = seed_scale(app.store, time.time(), tunnels, seed=1)
            print(
                f"seed --tunnels {tunnels}: {time.perf_counter() - started:.2f} s "
                f"({summary['connectors']} connectors, {summary['routes']} routes)"
            )
            account_id = summary["account_id"]
            with httpx.Client(
                transport=httpx.WSGITransport(app=app), base_url="http://sim.test", headers=headers
            ) as client:
                server, wall = measure(client, account_id)
            report(f"WSGI, {tunnels} tunnels, page of 1000", server, wall)
            worst = max(worst, statistics.median(server))
            http = make_http_server(app, "127.0.0.1", 0)
            thread = threading.Thread(target=http.serve_forever, daemon=True)
            thread.start()
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{http.server_port}", headers=headers) as client:
                    server, wall = measure(client, account_id)
            finally:
                http.shutdown()
                http.server_close()
            report(f"HTTP, {tunnels} tunnels, page of 1000", server, wall)
            worst = max(worst, statistics.median(server))
    verdict = "OK" if worst < 50 else "TOO SLOW"
    print(f"target: list 1,000 tunnels in < 50 ms server time -> worst median {worst:.1f} ms: {verdict}")
    return 0 if worst < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
