"""`make demo`: migrate, then run every part of the embedded default until Ctrl-C.

Each process writes its log to var/log/<name>.log; the terminal gets one summary, and, if a process dies, its
name and the last lines of its log. Ctrl-C (or SIGTERM) at any moment, also while the demo is starting, stops
every process it started.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

# The local OpenID provider stands in for Google. Each demo identity shows one side of the sign-in rule.
DEMO_DOMAIN = "example.com"
DEMO_IDENTITIES = [
    {
        "sub": "admin@example.com",
        "email": "admin@example.com",
        "email_verified": True,
        "hd": DEMO_DOMAIN,
        "name": "Ada Admin",
    },
    {
        "sub": "operator@example.com",
        "email": "operator@example.com",
        "email_verified": True,
        "hd": DEMO_DOMAIN,
        "name": "Otto Operator",
    },
    {
        "sub": "viewer@example.com",
        "email": "viewer@example.com",
        "email_verified": True,
        "hd": DEMO_DOMAIN,
        "name": "Vera Viewer",
    },
    # A personal Google account that happens to use a company address: no hosted-domain claim.
    {
        "sub": "personal@example.com",
        "email": "personal@example.com",
        "email_verified": True,
        "name": "Personal Account",
    },
    {
        "sub": "someone@gmail.com",
        "email": "someone@gmail.com",
        "email_verified": True,
        "name": "Someone Else",
    },
]
OIDC_PORT = 9400
CLOUDFLARE_PORT = 8787
AWS_PORT = 5000
WEB_PORT = 8000
# Who listens where, and the flag that moves it: checked before anything starts.
PORT_FLAGS = {
    "web": ("the web server", "--port"),
    "oidc": ("the OpenID provider", "--oidc-port"),
    "cloudflare": ("the Cloudflare simulator", "--cloudflare-port"),
    "aws": ("moto (AWS)", "--aws-port"),
}
LOG_TAIL_LINES = 20
# A process that dies is started again after a pause that doubles with each death in a row, up to a minute; one
# that dies this many times, each within RESTART_QUICK seconds of starting, cannot run here and stops the demo.
RESTART_FIRST = 1.0
RESTART_CAP = 60.0
RESTART_QUICK = 10.0
RESTART_GIVE_UP = 5
DEMO_CLOUDFLARE_TOKEN = "gatehouse-demo-token"  # noqa: S105 (the simulator's, on loopback)
DEMO_LOGPUSH_URL = "s3://gatehouse-logpush/gateway"


class Command(BaseCommand):
    help = (
        "Run the demo: the local OpenID provider, the Cloudflare simulator, moto's AWS endpoint, "
        "a Celery worker and beat, and the web server."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=WEB_PORT, help="the web server's port")
        parser.add_argument("--oidc-port", type=int, default=OIDC_PORT, help="the local OpenID provider's port")
        parser.add_argument("--cloudflare-port", type=int, default=CLOUDFLARE_PORT, help="the simulator's port")
        parser.add_argument("--aws-port", type=int, default=AWS_PORT, help="moto's port")
        parser.add_argument("--logpush-records", type=int, default=50_000, help="sessions written to the bucket")
        parser.add_argument("--workers", type=int, default=1, help="Celery worker processes (each runs two tasks)")
        parser.add_argument(
            "--gunicorn",
            type=int,
            default=0,
            metavar="PROCESSES",
            help="serve with gunicorn and this many web processes instead of Django's development server",
        )

    def handle(self, *args, port, oidc_port, cloudflare_port, aws_port, logpush_records, workers, gunicorn, **options):
        ports = {"oidc": oidc_port, "cloudflare": cloudflare_port, "aws": aws_port, "web": port}
        taken = [name for name, number in ports.items() if not _port_free(number)]
        if taken:
            raise CommandError(
                "\n".join(
                    f"Port {ports[name]} ({PORT_FLAGS[name][0]}) is taken; choose another with "
                    f"{PORT_FLAGS[name][1]} PORT."
                    for name in taken
                )
            )
        log_dir = settings.VAR_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        supervisor = Supervisor(log_dir)
        supervisor.log("setup").write_text("")
        self.stdout.write(f"Starting the Gatehouse demo; each process logs to {log_dir}/<name>.log")
        with supervisor.stopping_on_signals():
            try:
                self._run(supervisor, ports, logpush_records, workers, gunicorn)
            except ProcessDied as died:
                self.stderr.write(str(died))
                raise CommandError(f"The demo stopped because {died.name} exited.") from None
            except Stop:
                pass

    def _run(
        self, supervisor: "Supervisor", ports: dict[str, int], logpush_records: int, workers: int, gunicorn: int
    ) -> None:
        python = sys.executable
        sim_state = settings.VAR_DIR / "cloudflare_sim.sqlite3"
        account = self._seed_simulator(supervisor, python, sim_state)
        env = self._environment(ports, account["account_id"])
        os.environ.update(env)
        call_command("migrate", interactive=False, verbosity=0)

        celery = [python, "-m", "celery", "-A", "dashboard"]
        identities = [arg for identity in DEMO_IDENTITIES for arg in ("--user-claims", json.dumps(identity))]
        processes = {
            "oidc": [python, "-m", "oidc_provider_mock", "--port", str(ports["oidc"]), *identities],
            "cloudflare": [
                python,
                "-m",
                "cloudflare_sim",
                "serve",
                "--state",
                str(sim_state),
                "--port",
                str(ports["cloudflare"]),
                "--token",
                DEMO_CLOUDFLARE_TOKEN,
            ],
            "aws": [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports["aws"])],
        }
        worker = [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-gossip"]
        processes["worker"] = worker
        for n in range(2, workers + 1):
            # Each worker needs a node name of its own for the broker's control messages to reach it.
            processes[f"worker-{n}"] = [*worker, "--hostname", f"worker-{n}@%h"]
        processes["beat"] = [*celery, "beat", "--loglevel", "INFO"]
        if gunicorn:
            processes["web"] = [
                *(python, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{ports['web']}"),
                *("--workers", str(gunicorn), "--access-logfile", "-"),
            ]
        else:
            processes["web"] = [python, "manage.py", "runserver", f"127.0.0.1:{ports['web']}", "--noreload"]
        run_env = {**os.environ, **env}
        for name, argv in processes.items():
            supervisor.start(name, argv, env=run_env)
        supervisor.wait_for_ports(ports, timeout=60)
        # moto keeps its buckets in memory, so every start writes a fresh day of Gateway sessions; then the pages
        # are filled now rather than at beat's first pass. What each step said is in setup.log.
        steps = [
            [
                python,
                "-m",
                "cloudflare_sim",
                "logpush",
                "--to",
                DEMO_LOGPUSH_URL,
                "--records",
                str(logpush_records),
                "--hours",
                "48",
                "--objects-per-hour",
                "2",
                "--state",
                str(sim_state),
            ],
            [python, "manage.py", "sync_cloudflare", "--once"],
            [python, "manage.py", "ingest_logpush"],
            # moto starts empty: an estate over the routed networks, on addresses traffic reached, for the inventory.
            [python, "manage.py", "demo_aws"],
            [python, "manage.py", "discover_aws"],
            # The Access applications and policies that vendor grants and "Protect with Access" offer.
            [*celery, "call", "vendors.tasks.access_apps_refresh"],
            [*celery, "call", "discovery.tasks.access_policies_refresh_task"],
            # Vendors to revoke with one click, onboarded by the worker through the real workflow.
            [python, "manage.py", "demo_vendors"],
        ]
        for argv in steps:
            failed = supervisor.run_once("setup", argv, env=run_env) != 0
            if failed and argv[2:4] == ["cloudflare_sim", "logpush"]:
                raise CommandError(f"Writing the demo's Logpush files failed:\n{supervisor.tail('setup')}")
            if failed and argv[-1] == "demo_vendors":
                raise CommandError(f"Onboarding the demo's vendors failed:\n{supervisor.tail('setup')}")
        self.stdout.write(self.style.SUCCESS(f"\nGatehouse demo: http://127.0.0.1:{ports['web']}"))
        self.stdout.write(
            "  Sign in with Google (a local stand-in) as admin@example.com (admin), operator@example.com or\n"
            "  viewer@example.com; personal@example.com and someone@gmail.com show a refused sign-in.\n"
            f"  Cloudflare simulator :{ports['cloudflare']} (account {account['account_name']}), "
            f"AWS (moto) :{ports['aws']}, OpenID provider :{ports['oidc']}, worker and beat.\n"
            f"  Logs in {supervisor.log_dir}/. Ctrl-C stops everything.\n"
        )
        supervisor.watch()

    def _seed_simulator(self, supervisor: "Supervisor", python: str, state: Path) -> dict:
        """Seed the simulated Cloudflare account once; later starts keep the world it has become."""
        summary_file = state.with_suffix(".json")
        if not (state.exists() and summary_file.exists()):
            seeded = supervisor.log_dir / "seed.json"
            argv = [python, "-m", "cloudflare_sim", "seed", "--state", str(state), "--scenario", "demo", "--json"]
            if supervisor.run_once("setup", argv, env=dict(os.environ), stdout=seeded) != 0:
                raise CommandError(f"Seeding the Cloudflare simulator failed:\n{supervisor.tail('setup')}")
            summary_file.write_text(seeded.read_text())
        return json.loads(summary_file.read_text())

    def _environment(self, ports: dict[str, int], account_id: str) -> dict[str, str]:
        oidc_port, cloudflare_port, aws_port = ports["oidc"], ports["cloudflare"], ports["aws"]
        return {
            "GATEHOUSE_ENV": "local",
            "GATEHOUSE_ALLOWED_DOMAINS": os.environ.get("GATEHOUSE_ALLOWED_DOMAINS", DEMO_DOMAIN),
            "GATEHOUSE_ADMIN_EMAILS": os.environ.get("GATEHOUSE_ADMIN_EMAILS", "admin@example.com"),
            "GATEHOUSE_OIDC_SERVER_URL": f"http://127.0.0.1:{oidc_port}",
            "GOOGLE_CLIENT_ID": "gatehouse-demo",
            "GOOGLE_CLIENT_SECRET": "gatehouse-demo-secret",
            "CLOUDFLARE_API_TOKEN": DEMO_CLOUDFLARE_TOKEN,
            "CLOUDFLARE_ACCOUNT_ID": account_id,
            "CLOUDFLARE_BASE_URL": f"http://127.0.0.1:{cloudflare_port}/client/v4",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{aws_port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GATEHOUSE_LOGPUSH_URL": DEMO_LOGPUSH_URL,
            # The simulator posts its tunnel notifications here, so push events can be connected from Settings.
            "GATEHOUSE_PUBLIC_URL": f"http://127.0.0.1:{ports['web']}",
            "PYTHONUNBUFFERED": "1",
        }


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # As servers do: a port whose last connections are still in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Stop(Exception):
    """Ctrl-C or SIGTERM: stop everything."""


class ProcessDied(Exception):
    def __init__(self, name: str, status: int, tail: str, log: Path):
        self.name = name
        super().__init__(f"\n{name} exited with status {status}. The last lines of {log}:\n{tail}")


@dataclass
class Service:
    """A process the supervisor keeps running: how to start it again, and how it has fared."""

    argv: list[str]
    env: dict[str, str]
    started_at: float = 0.0
    deaths_in_a_row: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts named processes, each in its own session with its log in a file, starts again a long-running one
    that dies (after a backoff, saying so), and stops every one of them."""

    def __init__(self, log_dir: Path, out=sys.stderr):
        self.log_dir = log_dir
        self.out = out
        self.children: dict[str, subprocess.Popen] = {}
        self.services: dict[str, Service] = {}

    @contextlib.contextmanager
    def stopping_on_signals(self):
        """Ctrl-C and SIGTERM raise Stop wherever the demo is; on the way out, every child is stopped."""

        def stop(signum, frame):
            raise Stop

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            # A second Ctrl-C must not cut the clean-up short.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], stdout: Path | None = None):
        # Signals wait while the child is started and recorded, so that a Ctrl-C cannot leave one unrecorded.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            with self.log(name).open("a") as log:
                out = stdout.open("w") if stdout else log
                try:
                    child = subprocess.Popen(  # noqa: S603
                        argv, env=env, stdout=out, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
                    )
                finally:
                    if stdout:
                        out.close()
            self.children[name] = child
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        return child

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.log(name).write_text("")
        self.services[name] = Service(argv=argv, env=env, started_at=time.monotonic())
        self._spawn(name, argv, env)

    def run_once(self, name: str, argv: list[str], env: dict[str, str], stdout: Path | None = None) -> int:
        """Run a step to its end, its output appended to <name>.log; its exit status."""
        with self.log(name).open("a") as log:
            log.write(f"$ {' '.join(argv[1:])}\n")
        child = self._spawn(name, argv, env, stdout)
        status = child.wait()
        del self.children[name]
        return status

    def tail(self, name: str) -> str:
        try:
            lines = self.log(name).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"  {line}" for line in lines[-LOG_TAIL_LINES:])

    def _check_alive(self) -> None:
        """Start again, once its backoff is over, each long-running process that exited; ProcessDied for one that
        keeps dying as soon as it starts."""
        now = time.monotonic()
        for name, service in self.services.items():
            child = self.children[name]
            if service.restart_at is None:
                if child.poll() is None:
                    if service.deaths_in_a_row and now - service.started_at > RESTART_QUICK:
                        service.deaths_in_a_row = 0
                    continue
                self._died(name, service, child, now)
            elif now >= service.restart_at:
                service.restart_at = None
                service.started_at = now
                self._spawn(name, service.argv, service.env)
                print(f"{name} started again (pid {self.children[name].pid}).", file=self.out, flush=True)

    def _died(self, name: str, service: Service, child: subprocess.Popen, now: float) -> None:
        # What the dead process left in its session (a worker's pool processes) goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        quick = now - service.started_at <= RESTART_QUICK
        service.deaths_in_a_row = service.deaths_in_a_row + 1 if quick else 1
        if service.deaths_in_a_row >= RESTART_GIVE_UP:
            raise ProcessDied(name, child.returncode, self.tail(name), self.log(name))
        pause = min(RESTART_CAP, RESTART_FIRST * 2 ** (service.deaths_in_a_row - 1))
        service.restart_at = now + pause
        print(
            f"\n{name} exited with status {child.returncode}; starting it again in {pause:.0f} s. "
            f"The last lines of {self.log(name)}:\n{self.tail(name)}",
            file=self.out,
            flush=True,
        )

    def wait_for_ports(self, ports: dict[str, int], timeout: float) -> None:
        """Return once each named process accepts connections on its port; ProcessDied or CommandError if not."""
        deadline = time.monotonic() + timeout
        waiting = dict(ports)
        while waiting:
            self._check_alive()
            if time.monotonic() > deadline:
                names = ", ".join(f"{name} (see {self.log(name)})" for name in waiting)
                raise CommandError(f"Not listening after {timeout:.0f} s: {names}")
            for name, port in list(waiting.items()):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        del waiting[name]
            time.sleep(0.2)

    def watch(self) -> None:
        """Until Ctrl-C, or until a process cannot be kept running."""
        while True:
            self._check_alive()
            time.sleep(0.5)

    def stop(self) -> None:
        running = [child for child in self.children.values() if child.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        # Whatever a process left in its session (a worker's pool processes) goes too.
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        print("Demo stopped.", file=sys.stderr)
