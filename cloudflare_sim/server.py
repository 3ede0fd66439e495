"""`serve`: the simulator on a threaded stdlib HTTP server, with the world clock ticking in the background."""

from __future__ import annotations

import logging
import threading
import time
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cloudflare_sim import alerting, world
from cloudflare_sim.app import SimulatorApp
from cloudflare_sim.store import Store

log = logging.getLogger("cloudflare_sim")


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # Benchmarks open many connections at once; the default backlog of 5 would refuse some.
    request_queue_size = 128


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        # The request line is logged without its query string, and never with headers (they carry the token).
        log.debug("%s %s", self.command, self.path.split("?")[0])


class Clock(threading.Thread):
    """Moves the world every `interval` seconds on the seeded schedule, until stopped."""

    def __init__(self, state_path: str, seed: int, interval: float):
        super().__init__(daemon=True, name="cloudflare-sim-clock")
        self.state_path, self.seed, self.interval = state_path, seed, interval
        self.stopped = threading.Event()

    def run(self) -> None:
        store = Store(self.state_path)
        while not self.stopped.wait(self.interval):
            for happened in world.tick(store, time.time(), self.seed):
                log.info("clock: %s", happened)


def make_http_server(app: SimulatorApp, host: str, port: int) -> ThreadingWSGIServer:
    return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)


def serve(
    state_path: str, token: str, host: str, port: int, *, seed: int, clock_interval: float | None
) -> None:
    app = SimulatorApp(state_path, token, seed=seed)
    server = make_http_server(app, host, port)
    clock = Clock(state_path, seed, clock_interval) if clock_interval else None
    if clock:
        clock.start()
    # Notifications queued by any process on this state file (the CLI's events too) are posted from here.
    alerting.dispatcher_for(state_path, permanent=True)
    log.info("cloudflare_sim serving http://%s:%d/client/v4 (state %s)", host, server.server_port, state_path)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if clock:
            clock.stopped.set()
        server.server_close()
