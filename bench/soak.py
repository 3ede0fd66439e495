"""Soak: the whole of Gatehouse running for N minutes in a world that keeps changing, optionally with faults, its
invariants checked all along and at the end.

    .venv/bin/python bench/soak.py --minutes N [--faults] [--seed S]
    .venv/bin/python bench/soak.py --minutes N --redis redis://127.0.0.1:6379 --postgres postgres://postgres@127.0.0.1:5432

Embedded (the default) runs `manage.py demo` (SQLite, the embedded broker, one worker, beat, the development web
server, the simulator, moto and the OpenID provider) on free ports with a temporary var dir of its own, so it runs
beside a demo. With --redis and --postgres it runs as a deployment that outgrew one machine: the same demo command
with two Celery workers and gunicorn (two web processes), on a fresh PostgreSQL database made (and dropped) at the
--postgres server, and a redis-server of the soak's own on a free loopback port, so stopping it touches nobody
else's Redis; the --redis URL only asks for Redis mode (its address is not used).

The living workload, for N minutes:
- the simulator's clock moves its world, and the soak forces events too (connectors leaving, tunnels going down,
  degrading, recovering with fresh connectors) through its /__sim__/events endpoint;
- a Logpush object is written every minute (`python -m cloudflare_sim logpush`), which beat's poll (every minute
  here) ingests;
- the AWS estate changes in moto (instances started and terminated), each change followed by an inventory pass;
- signed-in people (admin, operator, viewer; signed in through the OpenID provider, as in a browser) open the main
  pages continually; the operator onboards vendors, grants them more applications, ends grants and revokes
  vendors (one and several at once) through Gatehouse's pages over HTTP. Two things have no page and go through
  Gatehouse's own code: grants shorter than a day (`vendors.services.vendor_create` with an end minutes away; the
  page takes a date) and their expiry (the soak sends `vendors.tasks.grants_expire` every 30 s, as beat does every
  5 minutes). Vendors' people sign in at Access in the simulator (`world.user_for_email`, `world.open_session`).

With --faults, one fault every few minutes, in a seeded order: a random Celery worker process SIGKILLed (the
demo's supervisor must bring a worker back), the broker down for 30 s (embedded: its folder replaced by a file, so
every read and write of it fails; Redis: SIGSTOP for 30 s, or SIGKILL and a restart 30 s later), and 30 s bursts
of Cloudflare 5xx and of 429 (the simulator's fault rules and rate limit).

Invariants, every violation listed in the report (exit status 1 if any): processes that died and whether they came
back; failed Celery tasks (worker logs); operations past their lease or active too long, ingest and inventory runs
and sync passes unfinished; HTTP 5xx from Gatehouse and /readyz slower than 2 s; alerts (every tunnel down or
degraded long enough alerted, once; none for a tunnel that stayed healthy; none left open after a recovery); and,
after a settle period (faults stopped, queues drained, a final sync), Gatehouse against the simulator: revoked
vendors admitted nowhere (people, domains, service tokens, sessions), active grants admitted, no drift, every
tunnel's status as Cloudflare says.

Everything it starts is stopped (SIGINT to the demo, then SIGKILL to anything left carrying its var dir), also on
Ctrl-C, SIGTERM and a hard timeout of the minutes plus a margin.
"""

import argparse
import atexit
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
LOGPUSH_URL = "s3://gatehouse-logpush/gateway"
SIM_TOKEN = "gatehouse-demo-token"  # noqa: S105 - the demo simulator's, on loopback
# Setup (seeding, a Logpush day, the first passes) and teardown, on top of the minutes and the settle period.
SETUP_SECONDS = 420
SETTLE_SECONDS = 300
TEARDOWN_SECONDS = 90
# Gatehouse's own cadence, as the stack runs it (settings: GATEHOUSE_TUNNEL_SYNC_SECONDS, ..._ALERT_GRACE_SECONDS).
SYNC_SECONDS = 30
GRACE_SECONDS = 120
# How long after a pass could first have seen a tunnel down its alert may take: the pass's own length and the
# sampling of the simulator's state.
ALERT_SLACK = 20
# A worker killed must be running again within this (the demo supervisor's backoff).
RESTART_SECONDS = 60
# The longest an operation may legitimately stay active: the engine's retries (about two minutes of backoff), a
# fault window and a worker restart.
RUN_BOUND = 240
# A lease that ran out this long ago with nobody having taken the run over: the resume pass runs every 30 s.
LEASE_SLACK = 45
PASS_BOUND = {"ingest run": 300, "inventory run": 300, "sync pass": 120}
READYZ_BOUND = 2.0
FAULT_SECONDS = 30
# Vendors' people live in a domain of their own, so that no other policy of the account admits them.
VENDOR_DOMAIN = "soak.example.net"


class Abort(Exception):
    """Ctrl-C, SIGTERM or the hard timeout: stop everything and report what was seen."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What a worker or beat logs when the broker cannot be reached: expected while the soak has it down.
BROKER_UNREACHABLE = re.compile(
    r"Cannot connect to|Couldn't apply scheduled task|Connection to broker lost|UNABLE TO RESTORE|EMERGENCY DUMP"
    r"|Not a directory|Connection refused|Error while reading from socket|Timeout reading from"
)
OUTAGE_GRACE_SECONDS = 15


def now() -> float:
    return time.time()


# --- what was seen ---------------------------------------------------------------------------------------------


class Record:
    """Everything the soak counts and every violation it finds, shared by its threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.t0 = now()
        self.actions: Counter = Counter()
        self.faults: list[dict] = []
        self.statuses: Counter = Counter()
        self.latencies: list[float] = []
        self.violations: dict[str, dict[str, str]] = defaultdict(dict)
        self.notes: list[str] = []
        # (time, request, who): requests Gatehouse did not answer at all, judged at the end against when the stack
        # stopped (if it did).
        self.unanswered: list[tuple[float, str, str]] = []

    def at(self, t: float | None = None) -> str:
        return f"t+{(t or now()) - self.t0:.0f}s"

    def count(self, action: str, outcome: str = "") -> None:
        with self.lock:
            self.actions[f"{action} ({outcome})" if outcome else action] += 1

    def violate(self, invariant: str, key: str, detail: str) -> None:
        """One line per (invariant, key); a later sighting of the same key replaces the detail."""
        with self.lock:
            self.violations[invariant][key] = detail

    def note(self, text: str) -> None:
        with self.lock:
            self.notes.append(f"{self.at()} {text}")


# --- processes -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Proc:
    pid: int
    ppid: int
    argv: list[str]
    pool: bool = False

    @property
    def role(self) -> str:
        """The demo's name for the process (worker-2, beat, ...); "pool" for a worker's pool process."""
        args, line = self.argv, " ".join(self.argv)
        if self.pool:
            return "pool"
        if "manage.py" in line and "demo" in args:
            return "demo"
        if "celery" in line and "worker" in args:
            return args[args.index("--hostname") + 1].split("@")[0] if "--hostname" in args else "worker"
        if "celery" in line and "beat" in args:
            return "beat"
        if "cloudflare_sim" in args and "serve" in args:
            return "cloudflare"
        for needle, role in (
            ("oidc_provider_mock", "oidc"),
            ("moto.server", "aws"),
            ("gunicorn", "web"),
            ("runserver", "web"),
        ):
            if needle in line:
                return role
        return "other"


def processes(marker: bytes) -> list[Proc]:
    """Every process whose environment carries the marker (the soak's var dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes():
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            ppid = int((entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv:
            found.append(Proc(int(entry.name), ppid, argv))
    by_pid = {p.pid: p for p in found}
    for proc in found:
        # A worker's pool processes carry their parent's command line.
        parent = by_pid.get(proc.ppid)
        proc.pool = parent is not None and parent.argv == proc.argv and parent.role.startswith("worker")
    return found


# --- the stack -------------------------------------------------------------------------------------------------


class Stack:
    """The demo command (and, in Redis mode, a redis-server and a PostgreSQL database), started and stopped."""

    def __init__(self, args, record: Record):
        self.args = args
        self.record = record
        self.redis_mode = bool(args.redis or args.postgres)
        self.var = Path(tempfile.mkdtemp(prefix="gatehouse-soak-"))
        self.marker = f"GATEHOUSE_VAR_DIR={self.var}".encode()
        self.ports = {name: free_port() for name in ("web", "oidc", "cloudflare", "aws")}
        self.redis_port = free_port()
        self.database = f"gatehouse_soak_{os.getpid()}"
        self.demo: subprocess.Popen | None = None
        self.redis: subprocess.Popen | None = None
        self.output: list[str] = []
        self.workers = 2 if self.redis_mode else 1
        self.expected = ["demo", "oidc", "cloudflare", "aws", "worker", "beat", "web"]
        self.expected += [f"worker-{n}" for n in range(2, self.workers + 1)]
        if self.redis_mode:
            self.expected.append("redis")
        self.stopped = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    @property
    def sim(self) -> str:
        return f"http://127.0.0.1:{self.ports['cloudflare']}"

    @property
    def sim_state(self) -> Path:
        return self.var / "cloudflare_sim.sqlite3"

    def server_url(self) -> str:
        parts = urlsplit(self.args.postgres)
        return f"{parts.scheme}://{parts.netloc}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        env |= {
            "GATEHOUSE_ENV": "local",
            "GATEHOUSE_VAR_DIR": str(self.var),
            # Beat polls the bucket every minute, so each minute's Logpush object is read within the soak.
            "GATEHOUSE_LOGPUSH_SECONDS": "60",
            "GATEHOUSE_TUNNEL_SYNC_SECONDS": str(SYNC_SECONDS),
            "GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS": str(GRACE_SECONDS),
            "PYTHONUNBUFFERED": "1",
        }
        if self.redis_mode:
            env["REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}/0"
            env["DATABASE_URL"] = f"{self.server_url()}/{self.database}"
        return env

    def start(self) -> None:
        if self.redis_mode:
            self.start_redis()
            import psycopg

            with psycopg.connect(f"{self.server_url()}/postgres", autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {self.database}")
        argv = [PYTHON, "manage.py", "demo", "--logpush-records", "5000", "--workers", str(self.workers)]
        for name, flag in (("web", "--port"), ("oidc", "--oidc-port"), ("cloudflare", "--cloudflare-port")):
            argv += [flag, str(self.ports[name])]
        argv += ["--aws-port", str(self.ports["aws"])]
        if self.redis_mode:
            argv += ["--gunicorn", "2"]
        self.demo = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = now() + SETUP_SECONDS
        while not any("Ctrl-C stops everything." in line for line in self.output):
            if self.demo.poll() is not None:
                raise SystemExit("The demo did not start:\n" + "".join(self.output[-30:]))
            if now() > deadline:
                raise SystemExit(f"The demo was not ready after {SETUP_SECONDS} s:\n" + "".join(self.output[-30:]))
            time.sleep(0.5)

    def _read_output(self) -> None:
        for line in self.demo.stdout:
            self.output.append(line)

    def start_redis(self) -> None:
        folder = self.var / "redis"
        folder.mkdir(exist_ok=True)
        log = (self.var / "redis.log").open("a")
        # Its own port, folder and append-only file: a restart after SIGKILL finds what was acknowledged.
        self.redis = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(folder)),
                *("--appendonly", "yes", "--save", "", "--daemonize", "no"),
            ],
            env=self.env(),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = now() + 20
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.redis_port)) == 0:
                    return
            if now() > deadline or self.redis.poll() is not None:
                raise SystemExit(f"redis-server did not start; see {self.var / 'redis.log'}")
            time.sleep(0.1)

    def account(self) -> str:
        return json.loads((self.var / "cloudflare_sim.json").read_text())["account_id"]

    def alive(self) -> bool:
        return self.demo is not None and self.demo.poll() is None

    def stop(self) -> list[str]:
        """Stop everything; what was still running afterwards (should be nothing)."""
        if self.stopped:
            return []
        self.stopped = True
        if self.demo is not None and self.demo.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.demo.send_signal(signal.SIGINT)
            try:
                self.demo.wait(timeout=45)
            except subprocess.TimeoutExpired:
                os.killpg(self.demo.pid, signal.SIGKILL)
        if self.redis is not None and self.redis.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.redis.pid, signal.SIGCONT)
                self.redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(timeout=10)
        # Whatever is left that carries the soak's var dir in its environment was started by it.
        deadline = now() + 10
        while (left := processes(self.marker)) and now() < deadline:
            for proc in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.3)
        leftover = [f"{p.pid} {' '.join(p.argv)[:120]}" for p in processes(self.marker)]
        if self.redis_mode:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(f"{self.server_url()}/postgres", autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
        return leftover


# --- Gatehouse over HTTP ---------------------------------------------------------------------------------------

CSRF = re.compile(r'(?:name="csrfmiddlewaretoken" value="|"X-CSRFToken": ")([^"]+)"')


class Person:
    """A signed-in person with a browser's cookies, counting every answer."""

    def __init__(self, stack: Stack, record: Record, email: str):
        self.stack, self.record, self.email = stack, record, email
        self.client = httpx.Client(base_url=stack.base, timeout=30)
        self.csrf = ""

    def sign_in(self) -> None:
        """Google's sign-in, played by the local OpenID provider: the same redirects a browser follows."""
        self.get("/accounts/login/")
        answer = self.post("/accounts/oidc/google/login/", {"process": "login"})
        authorize = answer.headers["location"]
        chosen = httpx.post(authorize, data={"sub": self.email}, timeout=30)
        callback = chosen.headers["location"]
        landed = self.client.get(callback)
        if landed.status_code != 302 or "sessionid" not in self.client.cookies:
            raise SystemExit(f"{self.email} could not sign in: {landed.status_code} {landed.text[:300]}")
        self.get("/")

    def _note(self, method: str, path: str, response: httpx.Response | None, took: float) -> None:
        status = response.status_code if response is not None else "no answer"
        with self.record.lock:
            self.record.statuses[status] += 1
            if method == "GET" and response is not None:
                self.record.latencies.append(took)
        if response is None:
            with self.record.lock:
                self.record.unanswered.append((now(), f"{method} {path}", self.email))
        elif response.status_code >= 500:
            self.record.violate(
                "HTTP 5xx from Gatehouse", f"{method} {path} {status} {self.record.at()}", f"{self.email}; see web.log"
            )

    def get(self, path: str) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = self.client.get(path)
        except httpx.HTTPError as error:
            self._note("GET", path, None, 0)
            self.record.note(f"GET {path}: {error!r}")
            return None
        self._note("GET", path, response, time.perf_counter() - began)
        if found := CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = self.client.post(path, data={"csrfmiddlewaretoken": self.csrf, **data})
        except httpx.HTTPError as error:
            self._note("POST", path, None, 0)
            self.record.note(f"POST {path}: {error!r}")
            return None
        self._note("POST", path, response, time.perf_counter() - began)
        return response


# --- the soak --------------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.record = Record()
        self.stack = Stack(args, self.record)
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.fault_windows: list[tuple[str, float, float]] = []
        self.broker_down = threading.Event()
        self.sampled = threading.Event()
        # Tunnel id -> [(time, status)], a new entry at each change the soak saw in the simulator's state.
        self.timeline: dict[str, list[tuple[float, str]]] = defaultdict(list)
        self.names: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.down_since: dict[str, float] = {}
        self.soak_vendors: list[str] = []
        self.instances: list[str] = []
        self.sequence = itertools.count(1)
        self.ended_early = ""
        self.ended_at = 0.0

    # -- setup --

    def start(self) -> None:
        print(f"soak: starting the stack ({self.mode}) in {self.stack.var}", flush=True)
        began = now()
        self.stack.start()
        env = self.stack.env()
        from dashboard.management.commands.demo import Command

        env |= Command()._environment(self.stack.ports, self.stack.account())
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
        # The soak's own use of Gatehouse's code (a service, sending tasks) logs only what goes wrong.
        os.environ["GATEHOUSE_LOG_LEVEL"] = "ERROR"
        import django

        django.setup()
        from cloudflare_sim.store import Store

        self.store = Store(self.stack.sim_state)
        self.account = self.stack.account()
        self.admin = Person(self.stack, self.record, "admin@example.com")
        self.operator = Person(self.stack, self.record, "operator@example.com")
        self.viewer = Person(self.stack, self.record, "viewer@example.com")
        for person in (self.admin, self.operator, self.viewer):
            person.sign_in()
        self._promote_operator()
        print(f"soak: stack ready in {now() - began:.0f} s; {self.args.minutes:g} minutes of workload", flush=True)

    @property
    def mode(self) -> str:
        return "Redis + PostgreSQL" if self.stack.redis_mode else "embedded (SQLite, embedded broker)"

    def _promote_operator(self) -> None:
        """The operator signs in as a viewer, as everyone does; the admin makes them an operator in Settings."""
        from dashboard.models import User

        operator = User.objects.get(email="operator@example.com")
        self.admin.get("/settings/")
        self.admin.post(f"/settings/users/{operator.public_id}/role", {"role": User.Role.OPERATOR})
        operator.refresh_from_db()
        if operator.role != User.Role.OPERATOR:
            raise SystemExit("The admin could not make operator@example.com an operator")
        self.operator_pk = operator.pk
        self.operator.get("/vendors/new/")

    # -- running --

    def run(self) -> None:
        self.record.t0 = now()
        actors = [
            (self.browse, (self.viewer,)),
            (self.browse, (self.admin,)),
            (self.vendor_work, ()),
            (self.world_events, ()),
            (self.logpush, ()),
            (self.aws_estate, ()),
            (self.expire_grants, ()),
            (self.watch, ()),
        ]
        if self.args.faults:
            actors.append((self.faults, ()))
        threading.Thread(target=self._guarded, args=(self.sample,), daemon=True).start()
        for target, args in actors:
            thread = threading.Thread(target=self._guarded, args=(target, *args), daemon=True)
            thread.start()
            self.threads.append(thread)
        until = self.record.t0 + self.args.minutes * 60
        while now() < until and not self.ended_early:
            time.sleep(1)
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=FAULT_SECONDS + 30)

    def _guarded(self, target, *args) -> None:
        from django import db

        try:
            target(*args)
        except Exception:
            self.record.note(f"soak thread {target.__name__} failed:\n{traceback.format_exc()}")
        finally:
            db.connections.close_all()

    def pause(self, low: float, high: float) -> bool:
        """Wait a random while; False once the soak is stopping."""
        return not self.stop.wait(self.rng.uniform(low, high))

    # -- people clicking through pages --

    def pages(self) -> list[str]:
        from tunnels.models import Tunnel
        from vendors.models import Vendor, WorkflowRun

        tunnels = [f"/tunnels/{t}/" for t in Tunnel.objects.filter(deleted_at=None).values_list("cf_id", flat=True)]
        vendors = [f"/vendors/{v}/" for v in Vendor.objects.values_list("public_id", flat=True)]
        runs = [f"/vendors/runs/{r}/" for r in WorkflowRun.objects.values_list("public_id", flat=True)[:20]]
        fixed = [
            "/",
            "/tunnels/",
            "/tunnels/?status=down",
            "/tunnels/routes/",
            "/tunnels/networks/",
            "/discovery/",
            "/discovery/applications/",
            "/discovery/ingest/",
            "/vendors/",
            "/vendors/applications/",
            "/alerts/",
            "/audit/",
            "/settings/",
        ]
        return fixed * 3 + tunnels + vendors + runs

    def browse(self, person: Person) -> None:
        paths = self.pages()
        for n in itertools.count():
            if not self.pause(0.3, 1.2):
                return
            if n % 50 == 49:
                paths = self.pages()
            person.get(self.rng.choice(paths))
            self.record.count("page opened")

    # -- vendors, through the pages --

    def vendor_work(self) -> None:
        from vendors.models import Grant, Vendor

        # About two vendor actions a minute: each costs Cloudflare a dozen calls, and Gatehouse's share of the account
        # (300 calls per 5 minutes by default) also pays for the sync.
        while self.pause(20, 40):
            ours = Vendor.objects.filter(name__startswith="Soak ")
            active = list(ours.filter(status=Vendor.Status.ACTIVE))
            grants = list(Grant.objects.filter(vendor__in=active, status=Grant.Status.ACTIVE))
            choices = ["onboard"] * 3 + ["short grant"] * 2
            if active:
                choices += ["grant more"] * 2 + ["revoke"] * 2 + ["revoke several"]
            if grants:
                choices += ["end grant"]
            action = self.rng.choice(choices)
            if action == "onboard":
                self.onboard()
            elif action == "short grant":
                self.short_grant()
            elif action == "grant more":
                self.grant_more(self.rng.choice(active))
            elif action == "end grant":
                grant = self.rng.choice(grants)
                self.page_action("end grant", f"/vendors/grants/{grant.public_id}/end/", {})
            elif action == "revoke":
                vendor = self.rng.choice(active)
                self.operator.get(f"/vendors/{vendor.public_id}/")
                self.page_action("revoke", f"/vendors/{vendor.public_id}/revoke/", {})
            else:
                chosen = self.rng.sample(active, min(len(active), self.rng.randint(2, 3)))
                self.operator.get("/vendors/")
                self.page_action("revoke several", "/vendors/revoke/", {"vendors": [str(v.public_id) for v in chosen]})

    def page_action(self, action: str, path: str, data: dict) -> httpx.Response | None:
        response = self.operator.post(path, data)
        if response is None:
            self.record.count(action, "no answer")
        elif response.status_code == 302:
            self.record.count(action, "done")
        else:
            error = re.search(r'class="(?:errorlist|error)[^"]*"[^>]*>(.*?)</', response.text, re.S)
            reason = re.sub(r"<[^>]+>", " ", error.group(1)).strip()[:200] if error else ""
            self.record.count(action, f"refused {response.status_code}")
            self.record.note(f"{action} {path}: {response.status_code} {reason}")
        return response

    def grantable(self) -> list:
        from vendors.models import AccessApplication

        return list(AccessApplication.objects.filter(present=True, inline_policies=0))

    def _vendor_form(self, apps: list, *, tokens: int) -> dict:
        today = dt.date.today()
        return {
            "review_due": str(today + dt.timedelta(days=90)),
            "applications": [str(a.pk) for a in apps],
            "starts_on": "",
            "ends_on": str(today + dt.timedelta(days=30)),
            "session_duration": self.rng.choice(["8h", "1h30m", "12h"]),
            "service_tokens": str(tokens),
            "token_duration": "720h",
        }

    def _people(self, n: int) -> tuple[list[str], list[str]]:
        """Contacts, or (one vendor in three) an email domain of the vendor's own."""
        if self.rng.random() < 0.33:
            return [], [f"v{n}.{VENDOR_DOMAIN}"]
        return [f"person{i}@v{n}.{VENDOR_DOMAIN}" for i in range(self.rng.randint(1, 3))], []

    def onboard(self) -> None:
        n = next(self.sequence)
        contacts, domains = self._people(n)
        apps = self.rng.sample(self.grantable(), self.rng.randint(1, 3))
        self.operator.get("/vendors/new/")
        form = self._vendor_form(apps, tokens=self.rng.choice([0, 0, 1]))
        form |= {"name": f"Soak vendor {n}", "sponsor": str(self.operator_pk)}
        form |= {"contacts": "\n".join(contacts), "domains": "\n".join(domains)}
        if self.page_action("onboard", "/vendors/create/", form) is not None:
            self.sign_in_at_access(contacts or [f"someone@{domains[0]}"], apps)

    def grant_more(self, vendor) -> None:
        granted = set(vendor.grants.filter(status="active").values_list("application_id", flat=True))
        apps = [a for a in self.grantable() if a.pk not in granted]
        if not apps:
            return
        chosen = self.rng.sample(apps, 1)
        self.operator.get(f"/vendors/{vendor.public_id}/edit/")
        form = self._vendor_form(chosen, tokens=0)
        form |= {"contacts": "\n".join(vendor.contacts), "domains": "\n".join(vendor.domains)}
        if self.page_action("grant more", f"/vendors/{vendor.public_id}/update/", form) is not None:
            self.sign_in_at_access(vendor.contacts or [f"someone@{vendor.domains[0]}"], chosen)

    def short_grant(self) -> None:
        """A grant minutes long: the page takes a day, so this goes through the service the page calls."""
        from django.core.exceptions import ValidationError
        from django.utils import timezone

        from dashboard.models import User
        from vendors import services

        n = next(self.sequence)
        contacts, domains = self._people(n)
        apps = self.rng.sample(self.grantable(), 1)
        operator = User.objects.get(pk=self.operator_pk)
        try:
            services.vendor_create(
                actor=operator,
                name=f"Soak vendor {n}",
                sponsor=operator,
                contacts=contacts,
                domains=domains,
                review_due=dt.date.today() + dt.timedelta(days=90),
                applications=apps,
                ends_at=timezone.now() + dt.timedelta(seconds=self.rng.uniform(60, 150)),
                session_duration="1h",
                service_tokens=0,
                token_duration="720h",  # noqa: S106 - a lifetime, not a secret
                request_origin=None,
            )
        except (ValidationError, OSError) as error:
            self.record.count("short grant", "refused")
            self.record.note(f"short grant: {error}")
            return
        self.record.count("short grant", "done")
        self.sign_in_at_access(contacts or [f"someone@{domains[0]}"], apps)

    def sign_in_at_access(self, emails: list[str], apps: list) -> None:
        """The vendor's people appear at Access; the simulator's clock signs them in wherever a policy admits
        them (and the soak, where one already does)."""
        from cloudflare_sim import world

        rng = random.Random(self.rng.random())
        for email in emails:
            user = world.user_for_email(self.store, self.account, email, now(), rng)
            for app in apps:
                doc = self.store.get("access_app", app.cf_id, self.account)
                if doc is not None and world.admits(self.store, doc, email):
                    world.open_session(self.store, self.account, user, doc, now(), rng)

    def expire_grants(self) -> None:
        from vendors.tasks import grants_expire

        while not self.stop.wait(30):
            try:
                grants_expire.delay()
                self.record.count("grants_expire sent")
            except Exception as error:
                self.record.count("grants_expire sent", f"broker refused: {type(error).__name__}")

    # -- the world --

    def world_events(self) -> None:
        from cloudflare_sim import world

        while self.pause(8, 16):
            tunnels = [t for t in self.store.list("tunnel", self.account) if t["deleted_at"] is None]
            tunnel = self.rng.choice(tunnels)
            if not world.connectors(self.store, tunnel["id"]):
                event = "recover"  # fresh connectors join
            else:
                event = self.rng.choice(["connector-down", "tunnel-down", "degrade", "recover", "recover"])
            try:
                answer = httpx.post(f"{self.stack.sim}/__sim__/events", json={"event": event, "tunnel": tunnel["id"]})
            except httpx.HTTPError:
                self.record.count(f"tunnel event {event}", "no answer")
                continue
            self.record.count(f"tunnel event {event}", "done" if answer.status_code == 200 else "not applicable")

    def logpush(self) -> None:
        env = {**os.environ}
        while not self.stop.wait(60):
            argv = [PYTHON, "-m", "cloudflare_sim", "logpush", "--to", LOGPUSH_URL, "--records", "400"]
            argv += ["--hours", str(1 / 60), "--objects-per-hour", "60", "--seed", str(self.rng.randrange(10**6))]
            argv += ["--state", str(self.stack.sim_state)]
            done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            self.record.count("logpush object written", "done" if done.returncode == 0 else "failed")
            if done.returncode:
                self.record.note(f"logpush: {done.stderr[-300:]}")

    def ec2(self):
        import boto3

        return boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")

    def aws_estate(self) -> None:
        from discovery.tasks import inventory_discover_task

        ec2 = self.ec2()
        demo = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": ["demo-*"]}])["Vpcs"]
        subnets = [
            s["SubnetId"]
            for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [v["VpcId"] for v in demo]}])["Subnets"]
        ]
        while not self.stop.wait(60):
            if self.instances and self.rng.random() < 0.4:
                ec2.terminate_instances(InstanceIds=[self.instances.pop(self.rng.randrange(len(self.instances)))])
                self.record.count("EC2 instance terminated")
            else:
                started = ec2.run_instances(
                    ImageId="ami-12c6146b",
                    MinCount=1,
                    MaxCount=1,
                    SubnetId=self.rng.choice(subnets),
                    TagSpecifications=[
                        {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": f"soak-{next(self.sequence)}"}]}
                    ],
                )
                self.instances.append(started["Instances"][0]["InstanceId"])
                self.record.count("EC2 instance started")
            try:
                inventory_discover_task.delay()
                self.record.count("inventory pass asked")
            except Exception as error:
                self.record.count("inventory pass asked", f"broker refused: {type(error).__name__}")

    # -- faults --

    def faults(self) -> None:
        kinds = ["kill worker", "broker outage", "cloudflare 5xx", "cloudflare 429"]
        self.rng.shuffle(kinds)
        gap = min(180.0, max(25.0, self.args.minutes * 60 / 5))
        for kind in itertools.cycle(kinds):
            if self.stop.wait(gap):
                return
            began = now()
            detail = {
                "kill worker": self.kill_worker,
                "broker outage": self.broker_outage,
                "cloudflare 5xx": self.cloudflare_errors,
                "cloudflare 429": self.cloudflare_rate_limit,
            }[kind]()
            self.fault_windows.append((kind, began, now() if kind != "kill worker" else began + RESTART_SECONDS))
            self.record.faults.append({"at": self.record.at(began), "kind": kind, "detail": detail})

    def kill_worker(self) -> str:
        table = processes(self.stack.marker)
        workers = [p for p in table if p.role.startswith("worker") or p.role == "pool"]
        if not workers:
            return "no worker process to kill"
        victim = self.rng.choice(workers)
        role = victim.role
        os.kill(victim.pid, signal.SIGKILL)
        return f"SIGKILL {role} process {victim.pid}"

    def broker_outage(self) -> str:
        self.broker_down.set()
        try:
            if not self.stack.redis_mode:
                broker = self.stack.var / "broker"
                aside = self.stack.var / "broker.outage"
                # A file where the folder was: every listing, write and rename of the broker fails, as on a lost disk.
                broker.rename(aside)
                broker.write_text("outage\n")
                self.stop.wait(FAULT_SECONDS)
                broker.unlink()
                aside.rename(broker)
                return f"broker folder unavailable for {FAULT_SECONDS} s"
            redis = self.stack.redis
            if self.rng.random() < 0.5:
                os.kill(redis.pid, signal.SIGSTOP)
                self.stop.wait(FAULT_SECONDS)
                os.kill(redis.pid, signal.SIGCONT)
                return f"redis-server stopped (SIGSTOP) for {FAULT_SECONDS} s"
            os.kill(redis.pid, signal.SIGKILL)
            redis.wait()
            self.stop.wait(FAULT_SECONDS)
            self.stack.start_redis()
            return f"redis-server killed (SIGKILL), restarted {FAULT_SECONDS} s later"
        finally:
            self.broker_down.clear()

    def _sim_faults(self, config: dict | None) -> None:
        url = f"{self.stack.sim}/__sim__/faults"
        (httpx.put(url, json=config) if config else httpx.delete(url)).raise_for_status()

    def cloudflare_errors(self) -> str:
        status = self.rng.choice([500, 502, 503])
        self._sim_faults({"rules": [{"endpoint": "*", "error_rate": 0.5, "error_status": status}]})
        self.stop.wait(FAULT_SECONDS)
        self._sim_faults(None)
        return f"half of Cloudflare calls answered {status} for {FAULT_SECONDS} s"

    def cloudflare_rate_limit(self) -> str:
        self._sim_faults({"rate_limit": {"limit": 5, "window": FAULT_SECONDS}})
        self.stop.wait(FAULT_SECONDS)
        self._sim_faults(None)
        return f"Cloudflare rate limit of 5 calls per {FAULT_SECONDS} s for {FAULT_SECONDS} s (429 with Retry-After)"

    # -- watching --

    def sample(self) -> None:
        """The simulator's tunnels every 2 s, from the start of the workload to the end of the checks."""
        while not self.sampled.wait(2):
            self.sample_tunnels()

    def watch(self) -> None:
        ticks = itertools.count()
        while not self.stop.wait(2):
            self.check_processes()
            if next(ticks) % 5 == 0:
                self.check_runs()
                self.check_readyz()

    def sample_tunnels(self) -> None:
        t = now()
        for tunnel in self.store.list("tunnel", self.account):
            status = "deleted" if tunnel["deleted_at"] else tunnel["status"]
            self.names[tunnel["id"]] = tunnel["name"]
            line = self.timeline[tunnel["id"]]
            if not line or line[-1][1] != status:
                line.append((t, status))

    def check_processes(self) -> None:
        table = processes(self.stack.marker)
        seen = {p.role: p.pid for p in table}
        redis = self.stack.redis
        if redis is not None and redis.poll() is None:
            seen["redis"] = redis.pid  # redis-server names itself by its address, not its command line
        t = now()
        for role in self.stack.expected:
            if role == "redis" and self.broker_down.is_set():
                continue  # down on purpose
            pid = seen.get(role)
            before = self.pids.get(role)
            if pid is None and role not in self.down_since:
                self.down_since[role] = t
                self.record.note(f"{role} ({before}) is not running")
            elif pid is not None and role in self.down_since:
                gone = self.down_since.pop(role)
                self.record.note(f"{role} is running again ({pid}) after {t - gone:.0f} s")
                detail = f"died at {self.record.at(gone)}, back after {t - gone:.0f} s as pid {pid}"
                if t - gone > RESTART_SECONDS:
                    self.record.violate("processes died", role, detail)
            elif pid is not None and before is not None and pid != before:
                self.record.note(f"{role} restarted between two looks: {before} -> {pid}")
            if pid is not None:
                self.pids[role] = pid
        for role, gone in self.down_since.items():
            if t - gone > RESTART_SECONDS:
                self.record.violate(
                    "processes died", role, f"died at {self.record.at(gone)}, not back {t - gone:.0f} s later"
                )
        if not self.stack.alive() and not self.ended_early:
            said = "".join(self.stack.output[-12:]).strip()
            self.record.violate(
                "processes died",
                "demo",
                f"the demo supervisor stopped everything at {self.record.at()} instead of bringing the dead "
                f"process back; it said:\n{said}",
            )
            self.ended_early = "the demo stopped"
            self.ended_at = now()

    def check_runs(self) -> None:
        from django.db.models import Q
        from django.utils import timezone

        from discovery.models import IngestRun, InventoryRun, LogObject, ProtectionChange
        from tunnels.models import SyncPass, TunnelChange
        from vendors.models import WorkflowRun

        moment = timezone.now()
        for model, label in (
            (WorkflowRun, "vendor workflow run"),
            (TunnelChange, "tunnel change"),
            (ProtectionChange, "Access change"),
        ):
            for run in model.objects.filter(status__in=["pending", "running"]):
                age = (moment - run.created_at).total_seconds()
                what = f"{label} {run.public_id} ({getattr(run, 'kind', '')}, {run.status})"
                if run.lease_until and (moment - run.lease_until).total_seconds() > LEASE_SLACK:
                    late = (moment - run.lease_until).total_seconds()
                    self.record.violate(
                        "runs past their lease", what, f"lease ran out {late:.0f} s ago and nobody took it over"
                    )
                if age > RUN_BOUND:
                    self.record.violate(
                        "runs active too long", what, f"active for {age:.0f} s (bound {RUN_BOUND} s); {run.reason}"
                    )
        for model, label in ((IngestRun, "ingest run"), (InventoryRun, "inventory run"), (SyncPass, "sync pass")):
            bound = PASS_BOUND[label]
            stuck = model.objects.filter(finished_at=None, started_at__lt=moment - dt.timedelta(seconds=bound))
            for run in stuck:
                self.record.violate(
                    "runs active too long",
                    f"{label} {run.pk}",
                    f"started {run.started_at:%H:%M:%S}, unfinished for over {bound} s",
                )
        late = moment - dt.timedelta(seconds=LEASE_SLACK)
        for obj in LogObject.objects.filter(Q(state="claimed") & Q(lease_until__lt=late)):
            self.record.violate(
                "runs past their lease", f"Logpush object {obj.key}", f"claimed, lease ran out at {obj.lease_until}"
            )

    def check_readyz(self) -> None:
        began = time.perf_counter()
        try:
            answer = httpx.get(f"{self.stack.base}/readyz", timeout=10)
            status, outcome = f"{answer.status_code} {answer.text[:200]}", str(answer.status_code)
        except httpx.HTTPError as error:
            status, outcome = repr(error), type(error).__name__
        took = time.perf_counter() - began
        self.record.count(f"/readyz {outcome}")
        if took > READYZ_BOUND:
            self.record.violate("/readyz within 2 s", self.record.at(), f"took {took:.1f} s, answered {status}")

    # -- the end --

    def settle(self) -> None:
        """Faults off, then wait (bounded) for the queues to drain and every operation and pass to finish."""
        print("soak: settling", flush=True)
        with contextlib.suppress(httpx.HTTPError):
            self._sim_faults(None)
        deadline = now() + SETTLE_SECONDS
        while now() < deadline and self.stack.alive():
            busy = self.busy()
            if not busy:
                self.record.note(f"settled in {SETTLE_SECONDS - (deadline - now()):.0f} s")
                return
            time.sleep(3)
        self.record.violate("settled", "after the workload", f"still busy after {SETTLE_SECONDS} s: {self.busy()}")

    def busy(self) -> list[str]:
        from django.utils import timezone

        from discovery.models import IngestRun, InventoryRun, ProtectionChange
        from tunnels.models import SyncPass, TunnelChange
        from vendors.models import WorkflowRun

        busy = []
        for model in (WorkflowRun, TunnelChange, ProtectionChange):
            if n := model.objects.filter(status__in=["pending", "running"]).count():
                busy.append(f"{n} {model._meta.verbose_name_plural} active")
        recent = timezone.now() - dt.timedelta(minutes=10)
        for model in (IngestRun, InventoryRun, SyncPass):
            if n := model.objects.filter(finished_at=None, started_at__gt=recent).count():
                busy.append(f"{n} {model._meta.verbose_name_plural} unfinished")
        if queued := self.queued():
            busy.append(f"{queued} messages queued")
        return busy

    def queued(self) -> int:
        if self.stack.redis_mode:
            import redis

            client = redis.Redis(port=self.stack.redis_port, socket_timeout=5)
            return int(client.llen("celery"))
        return sum(1 for p in (self.stack.var / "broker" / "queue").glob("*") if not p.name.startswith("."))

    def final_checks(self) -> None:
        print("soak: final checks", flush=True)
        self.check_processes()
        for role, gone in self.down_since.items():
            self.record.violate("processes died", role, f"died at {self.record.at(gone)}, not running at the end")
        self.check_runs()
        self.check_outcomes()
        self.check_vendors()
        self.check_tunnels()
        self.check_alerts()
        self.check_worker_logs()

    def check_outcomes(self) -> None:
        from discovery.models import ProtectionChange
        from tunnels.models import TunnelChange
        from vendors.models import Vendor, WorkflowRun

        for model, label in (
            (WorkflowRun, "vendor workflow run"),
            (TunnelChange, "tunnel change"),
            (ProtectionChange, "Access change"),
        ):
            for run in model.objects.exclude(status__in=["succeeded", "cancelled"]):
                what = f"{label} {run.public_id} ({getattr(run, 'kind', '')})"
                self.record.violate("operations that did not succeed", what, f"{run.status}: {run.reason[:300]}")
        for vendor in Vendor.objects.filter(status__in=[Vendor.Status.REVOKING, Vendor.Status.NEEDS_ATTENTION]):
            self.record.violate("vendors left midway", vendor.name, f"{vendor.status}: {vendor.status_reason[:300]}")

    def check_vendors(self) -> None:
        """Revoked vendors admitted nowhere; active grants admitted, ended ones not; no drift (read back through
        the vendor page's drift check)."""
        from cloudflare_sim import world
        from vendors.models import Grant, Vendor

        apps = self.store.list("access_app", self.account)
        sessions = self.store.list("access_session", self.account)

        def people(vendor) -> list[str]:
            return vendor.contacts + [f"someone@{d}" for d in vendor.domains]

        def theirs(vendor, email: str) -> bool:
            return email in vendor.contacts or any(email.endswith("@" + d) for d in vendor.domains)

        checked = Counter()
        for vendor in Vendor.objects.filter(status=Vendor.Status.REVOKED):
            checked["revoked vendors"] += 1
            for email in people(vendor):
                for app in apps:
                    if world.admits(self.store, app, email):
                        self.record.violate("revoked vendors admitted nowhere", f"{vendor.name} {email}", app["name"])
            for token in vendor.service_tokens.exclude(cf_id=""):
                for app in apps:
                    if world.token_admitted(self.store, app, token.cf_id):
                        self.record.violate(
                            "revoked vendors admitted nowhere", f"{vendor.name} token {token.cf_id}", app["name"]
                        )
            for session in sessions:
                if theirs(vendor, session["email"]):
                    self.record.violate(
                        "revoked vendors admitted nowhere",
                        f"{vendor.name} session {session['email']}",
                        f"live session on {len(session['apps'])} application(s)",
                    )
        by_cf_id = {a["id"]: a for a in apps}
        for vendor in Vendor.objects.filter(status=Vendor.Status.ACTIVE):
            checked["active vendors"] += 1
            grants = list(vendor.grants.select_related("application"))
            live = {g.application.cf_id for g in grants if g.status == Grant.Status.ACTIVE}
            for grant in grants:
                app = by_cf_id.get(grant.application.cf_id)
                if app is None:
                    continue
                for email in people(vendor):
                    admitted = world.admits(self.store, app, email)
                    if grant.status == Grant.Status.ACTIVE and not admitted:
                        self.record.violate(
                            "active grants admitted", f"{vendor.name} {email} {app['name']}", "not admitted"
                        )
                    if grant.application.cf_id not in live and admitted:
                        self.record.violate(
                            "ended grants admitted nowhere",
                            f"{vendor.name} {email} {app['name']}",
                            f"grant {grant.status}, still admitted",
                        )
            self.operator.post(f"/vendors/{vendor.public_id}/drift/check/", {})
            vendor.refresh_from_db()
            if vendor.drift:
                self.record.violate("no drift", vendor.name, json.dumps(vendor.drift)[:400])
        self.record.note(f"vendors checked against the simulator: {dict(checked)}")

    def check_tunnels(self) -> None:
        """After a final sync, every tunnel as Cloudflare says; a tunnel the clock moved during the pass is read
        again after the next."""
        from tunnels.models import Tunnel

        def sim_statuses() -> dict[str, str]:
            return {t["id"]: t["status"] for t in self.store.list("tunnel", self.account) if t["deleted_at"] is None}

        mismatched: dict[str, str] | None = None
        said = ""
        deadline = now() + 150
        while now() < deadline:
            before = sim_statuses()
            sync = subprocess.run(
                [PYTHON, "manage.py", "sync_cloudflare", "--once"],
                cwd=ROOT,
                env={**os.environ},
                capture_output=True,
                text=True,
                timeout=120,
            )
            after = sim_statuses()
            said = (sync.stdout + sync.stderr).strip()[-400:]
            if sync.returncode:
                self.record.violate("tunnels as Cloudflare says", "final sync", said)
                return
            waiting = re.search(r"retry in (\d+) s", said)
            if "Another sync pass is running" in said or waiting:
                # Beat's pass holds the lease, or the API budget is spent: the next pass that reads the list counts.
                time.sleep(min(float(waiting.group(1)) if waiting else 2, max(0, deadline - now())))
                continue
            ours = {str(t.cf_id): t for t in Tunnel.objects.filter(deleted_at=None)}
            mismatched = {}
            for tunnel_id in before.keys() | after.keys() | ours.keys():
                if before.get(tunnel_id) != after.get(tunnel_id):
                    continue  # moved during the pass
                mine = ours.get(tunnel_id)
                theirs = after.get(tunnel_id)
                if mine is None or theirs is None or mine.status != theirs:
                    mismatched[tunnel_id] = (
                        f"{self.names.get(tunnel_id, tunnel_id)}: Gatehouse "
                        f"{mine.status if mine else 'has none'}, Cloudflare {theirs or 'has none'}"
                    )
            if not mismatched:
                return
        if mismatched is None:
            self.record.violate("tunnels as Cloudflare says", "final sync", f"no pass read the list in 150 s: {said}")
            return
        self.record.note(f"the last final sync pass said: {said}")
        for tunnel_id, detail in mismatched.items():
            self.record.violate("tunnels as Cloudflare says", tunnel_id, detail)

    def check_alerts(self) -> None:
        from alerts.models import Alert

        start, end = self.record.t0, now()
        alerts = defaultdict(list)
        for alert in Alert.objects.filter(target_type="tunnel").order_by("raised_at"):
            raised = alert.raised_at.timestamp()
            resolved = alert.resolved_at.timestamp() if alert.resolved_at else None
            alerts[alert.target_id].append((raised, resolved, alert))
        for tunnel_id, line in self.timeline.items():
            name = self.names.get(tunnel_id, tunnel_id)
            spans = [(t, s, (line[i + 1][0] if i + 1 < len(line) else end)) for i, (t, s) in enumerate(line)]
            mine = alerts.get(tunnel_id, [])
            # Unhealthy stretches: down or degraded without a healthy moment between.
            stretches, current = [], None
            for began, status, ended in spans:
                bad = status in ("down", "degraded")
                if bad and current is None:
                    current = [began, ended, status == "down" and began]
                elif bad:
                    current[1] = ended
                    current[2] = current[2] or (status == "down" and began)
                elif current is not None:
                    stretches.append(current)
                    current = None
            if current is not None:
                stretches.append(current)
            for began, ended, down_at in stretches:
                if down_at:
                    due = self.deadline(down_at, SYNC_SECONDS + ALERT_SLACK)
                else:
                    due = self.deadline(began, GRACE_SECONDS + SYNC_SECONDS + ALERT_SLACK)
                if ended < due or due > end:
                    continue
                covering = [a for a in mine if a[0] <= due and (a[1] is None or a[1] >= began)]
                if not covering:
                    self.record.violate(
                        "unhealthy tunnels alerted",
                        f"{name} {self.record.at(began)}",
                        f"{'down' if down_at else 'degraded'} from {self.record.at(began)} to "
                        f"{self.record.at(ended)}, no alert by {self.record.at(due)}; Gatehouse: "
                        f"{self.gatehouse_view(tunnel_id, began, due)}",
                    )
                raised_within = [a for a in mine if began < a[0] <= ended]
                if len(raised_within) > 1:
                    self.record.violate(
                        "unhealthy tunnels alerted once",
                        f"{name} {self.record.at(began)}",
                        f"{len(raised_within)} alerts raised in one unhealthy stretch",
                    )
            for raised, _resolved, alert in mine:
                if raised < start:
                    continue
                lookback = [s for t, s, e in spans if e >= raised - GRACE_SECONDS and t <= raised + 2]
                if not any(s in ("down", "degraded") for s in lookback):
                    self.record.violate(
                        "no alert for a healthy tunnel",
                        f"{name} {self.record.at(raised)}",
                        f"'{alert.subject}' while Cloudflare said {sorted(set(lookback))}; Gatehouse: "
                        f"{self.gatehouse_view(tunnel_id, raised - GRACE_SECONDS, raised)}",
                    )
            if mine and mine[-1][1] is None and spans and spans[-1][1] in ("healthy", "inactive", "deleted"):
                recovered = spans[-1][0]
                if end > self.deadline(recovered, GRACE_SECONDS + 2 * SYNC_SECONDS + ALERT_SLACK):
                    self.record.violate(
                        "alerts resolved after recovery",
                        name,
                        f"'{mine[-1][2].subject}' still open; {spans[-1][1]} since {self.record.at(recovered)}",
                    )

    def gatehouse_view(self, tunnel_id: str, began: float, until: float) -> str:
        """What Gatehouse recorded between two moments: its sync passes (and why any stopped early) and the
        tunnel's status changes."""
        from tunnels.models import StatusChange, SyncPass

        def moment(t: float) -> dt.datetime:
            return dt.datetime.fromtimestamp(t, dt.UTC)

        passes = list(SyncPass.objects.filter(started_at__gte=moment(began), started_at__lte=moment(until)))
        errors = Counter(p.error[:90] for p in passes if p.error)
        changes = StatusChange.objects.filter(
            tunnel__cf_id=tunnel_id, at__gte=moment(began - SYNC_SECONDS), at__lte=moment(until)
        ).order_by("at")
        return (
            f"{len(passes)} sync passes"
            + (
                f", {sum(errors.values())} stopped early ({'; '.join(f'{n}x {e}' for e, n in errors.items())})"
                if errors
                else ""
            )
            + "; status changes: "
            + (
                ", ".join(f"{self.record.at(c.at.timestamp())} {c.old_status}->{c.new_status}" for c in changes)
                or "none"
            )
        )

    def deadline(self, began: float, allowance: float) -> float:
        """`began + allowance`, pushed past every fault window it meets (passes fail or stop during a fault)."""
        due = began + allowance
        for _kind, start, stop in sorted(self.fault_windows, key=lambda w: w[1]):
            if start <= due and stop >= began:
                due = max(due, stop + allowance)
        return due

    def _during_broker_outage(self, line: str) -> bool:
        """Whether a log line says the broker could not be reached while the soak had it down (and a few seconds
        after): the outage itself, which the report notes, not a task that failed."""
        if not BROKER_UNREACHABLE.search(line):
            return False
        at = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return any(
            kind == "broker outage" and start <= at <= stop + OUTAGE_GRACE_SECONDS
            for kind, start, stop in self.fault_windows
        )

    def check_worker_logs(self) -> None:
        """Task failures: the ERROR and CRITICAL lines of the workers and beat ("raised unexpected", "Unrecoverable
        error", a task beat could not send), each kind once with its count and the exception that ended it. Lines
        saying the broker was unreachable while the soak had it down are counted apart, as the outage."""
        stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
        logs = [*sorted((self.stack.var / "log").glob("worker*.log")), self.stack.var / "log" / "beat.log"]
        for log in logs:
            if not log.exists():
                continue
            lines = log.read_text(errors="replace").splitlines()
            for i, line in enumerate(lines):
                if not stamp.match(line) or not re.search(r" (ERROR|CRITICAL) |raised unexpected|Unrecoverable", line):
                    continue
                if self._during_broker_outage(line):
                    self.record.count("broker unreachable during the outage (log lines)")
                    continue
                block = list(itertools.takewhile(lambda follow: not stamp.match(follow), lines[i + 1 : i + 200]))
                raised = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)\b")
                ending = next((b.strip() for b in reversed(block) if raised.match(b)), "")
                task = re.search(r"Task ([\w.]+)\[", line)
                message = line.split(" ", 4)[-1]
                kind = f"{log.name}: {task.group(1) if task else re.sub(r'[0-9a-f-]{36}|/tmp/\S+', '…', message)[:140]}"
                found = self.record.violations["Celery tasks that failed"]
                times = int(found[kind].split(" time(s)")[0]) + 1 if kind in found else 1
                first = found[kind].split("first at ")[1].split(";")[0] if kind in found else line[:23]
                detail = f"{times} time(s), first at {first}"
                self.record.violate("Celery tasks that failed", kind, f"{detail}; {ending[:200]}")

    # -- report --

    def report(self, leftover: list[str]) -> int:
        record = self.record
        out = [
            "",
            f"Gatehouse soak: {self.mode}, {self.args.minutes:g} minutes, seed {self.args.seed}, "
            f"faults {'on' if self.args.faults else 'off'}",
        ]
        if self.ended_early:
            out.append(f"  ENDED EARLY: {self.ended_early}")
        out.append("workload:")
        out += [f"  {name}: {n}" for name, n in sorted(record.actions.items())]
        out.append("faults injected:" if record.faults else "faults injected: none")
        out += [f"  {f['at']} {f['kind']}: {f['detail']}" for f in record.faults]
        latencies = sorted(record.latencies)
        p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)] * 1000 if latencies else float("nan")
        median = statistics.median(latencies) * 1000 if latencies else float("nan")
        histogram = ", ".join(f"{status}: {n}" for status, n in sorted(record.statuses.items(), key=str))
        out.append(f"HTTP statuses from Gatehouse: {histogram}")
        out.append(f"page latency: median {median:.0f} ms, p95 {p95:.0f} ms over {len(latencies)} pages")
        if leftover:
            record.violate("no leftover processes", "after stopping", "; ".join(leftover))
        for t, request, who in record.unanswered:
            # The stack takes a moment to stop everything once the demo gives up.
            if not self.ended_at or t < self.ended_at - 15:
                record.violate("Gatehouse answered", f"{request} {record.at(t)}", f"{who}: no answer")
        out.append("invariants:")
        for invariant in INVARIANTS:
            found = record.violations.get(invariant, {})
            verdict = "FAIL" if found else "not checked" if self.ended_early and invariant in AT_THE_END else "pass"
            out.append(f"  [{verdict}] {invariant}" + (f": {len(found)}" if found else ""))
            out += [f"      {key}: {detail}".replace("\n", "\n        ") for key, detail in sorted(found.items())]
        if record.notes:
            out.append("notes:")
            out += [f"  {n}".replace("\n", "\n    ") for n in record.notes[-60:]]
        failed = sum(len(v) for v in record.violations.values())
        out.append(f"{failed} violation(s); logs in {self.stack.var / 'log'}" if failed else "0 violations")
        print("\n".join(out), flush=True)
        return 1 if failed else 0


INVARIANTS = [
    "processes died",
    "Celery tasks that failed",
    "runs past their lease",
    "runs active too long",
    "settled",
    "operations that did not succeed",
    "vendors left midway",
    "HTTP 5xx from Gatehouse",
    "Gatehouse answered",
    "/readyz within 2 s",
    "unhealthy tunnels alerted",
    "unhealthy tunnels alerted once",
    "no alert for a healthy tunnel",
    "alerts resolved after recovery",
    "revoked vendors admitted nowhere",
    "active grants admitted",
    "ended grants admitted nowhere",
    "no drift",
    "tunnels as Cloudflare says",
    "no leftover processes",
]
# Checked once the workload is over and the stack has settled: not at all when the stack stopped before.
AT_THE_END = {
    "settled",
    "operations that did not succeed",
    "vendors left midway",
    "alerts resolved after recovery",
    "revoked vendors admitted nowhere",
    "active grants admitted",
    "ended grants admitted nowhere",
    "no drift",
    "tunnels as Cloudflare says",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--faults", action="store_true")
    parser.add_argument("--redis", help="run on Redis (a redis-server of the soak's own; the URL's address is unused)")
    parser.add_argument("--postgres", help="a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if bool(args.redis) != bool(args.postgres):
        parser.error("--redis and --postgres go together")
    soak = Soak(args)

    def abort(signum, frame):
        raise Abort(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
        signal.signal(sig, abort)
    signal.alarm(int(SETUP_SECONDS + args.minutes * 60 + SETTLE_SECONDS + TEARDOWN_SECONDS))
    atexit.register(soak.stack.stop)
    leftover: list[str] = []
    try:
        soak.start()
        soak.run()
        if soak.stack.alive():
            soak.settle()
            soak.final_checks()
        else:
            soak.check_worker_logs()
    except Abort as why:
        soak.ended_early = soak.ended_early or f"stopped by {why} ({'hard timeout' if str(why) == 'SIGALRM' else ''})"
        soak.stop.set()
    finally:
        soak.sampled.set()
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        soak.stop.set()
        leftover = soak.stack.stop()
    status = soak.report(leftover)
    if not status:
        shutil.rmtree(soak.stack.var, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
