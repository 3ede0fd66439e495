"""`make demo`: migrate, then run every part of the embedded default until Ctrl-C."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
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

    def handle(self, *args, port, oidc_port, cloudflare_port, aws_port, logpush_records, **options):
        python = sys.executable
        sim_state = settings.VAR_DIR / "cloudflare_sim.sqlite3"
        account = self._seed_simulator(python, sim_state)
        env = self._environment(oidc_port, cloudflare_port, aws_port, account["account_id"])
        os.environ.update(env)
        call_command("migrate", interactive=False, verbosity=0)
        broker = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            if key in broker:
                Path(broker[key]).mkdir(parents=True, exist_ok=True)

        celery = [python, "-m", "celery", "-A", "dashboard"]
        identities = [arg for identity in DEMO_IDENTITIES for arg in ("--user-claims", json.dumps(identity))]
        processes = {
            "oidc": [python, "-m", "oidc_provider_mock", "--port", str(oidc_port), *identities],
            "cloudflare": [
                python,
                "-m",
                "cloudflare_sim",
                "serve",
                "--state",
                str(sim_state),
                "--port",
                str(cloudflare_port),
                "--token",
                DEMO_CLOUDFLARE_TOKEN,
            ],
            "aws": [python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(aws_port)],
            "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-gossip"],
            "beat": [*celery, "beat", "--loglevel", "INFO"],
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        }
        supervisor = Supervisor(processes, env={**os.environ, **env})
        supervisor.start()
        ports = {"oidc": oidc_port, "cloudflare": cloudflare_port, "aws": aws_port, "web": port}
        if not supervisor.wait_for_ports(ports, timeout=60):
            supervisor.stop()
            raise CommandError("The demo did not start; see the messages above.")
        # moto keeps its buckets in memory, so every start writes a fresh day of Gateway sessions.
        logpush = subprocess.run(  # noqa: S603
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
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=False,
        )
        if logpush.returncode != 0:
            supervisor.stop()
            raise CommandError(f"Writing the demo's Logpush files failed:\n{logpush.stderr[-2000:]}")
        # Fill the pages now rather than at beat's first pass, and show what each pass did.
        for step in (["sync_cloudflare", "--once"], ["ingest_logpush"], ["discover_aws"]):
            self.stdout.write(f"manage.py {' '.join(step)}")
            subprocess.run([python, "manage.py", *step], env={**os.environ, **env}, check=False)  # noqa: S603
        # The Access applications and policies that vendor grants and "Protect with Access" offer.
        for task in ("vendors.tasks.access_apps_refresh", "discovery.tasks.access_policies_refresh_task"):
            subprocess.run([*celery, "call", task], env={**os.environ, **env}, check=False, capture_output=True)  # noqa: S603
        self.stdout.write(self.style.SUCCESS(f"\nGatehouse demo: http://127.0.0.1:{port}\n"))
        self.stdout.write(
            "Sign in with Google (the local OpenID provider) and pick an identity:\n"
            "  admin@example.com      admin (GATEHOUSE_ADMIN_EMAILS)\n"
            "  operator@example.com   signs in as a viewer; the admin can make it an operator\n"
            "  viewer@example.com     viewer\n"
            "  personal@example.com   refused: no Workspace hosted-domain claim\n"
            "  someone@gmail.com      refused: domain not allowed\n"
            f"Cloudflare is simulated at http://127.0.0.1:{cloudflare_port}/client/v4 "
            f"(account {account['account_name']}); AWS is moto at http://127.0.0.1:{aws_port} "
            f"with Gateway logs in {DEMO_LOGPUSH_URL}.\n"
            "Ctrl-C stops everything.\n"
        )
        supervisor.wait()

    def _seed_simulator(self, python: str, state: Path) -> dict:
        """Seed the simulated Cloudflare account once; later starts keep the world it has become."""
        summary_file = state.with_suffix(".json")
        if not (state.exists() and summary_file.exists()):
            seeded = subprocess.run(  # noqa: S603
                [python, "-m", "cloudflare_sim", "seed", "--state", str(state), "--scenario", "demo", "--json"],
                capture_output=True,
                text=True,
                check=False,
            )
            if seeded.returncode != 0:
                raise CommandError(f"Seeding the Cloudflare simulator failed:\n{seeded.stderr[-2000:]}")
            summary_file.write_text(seeded.stdout)
        return json.loads(summary_file.read_text())

    def _environment(self, oidc_port: int, cloudflare_port: int, aws_port: int, account_id: str) -> dict[str, str]:
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
            "PYTHONUNBUFFERED": "1",
        }


class Supervisor:
    """Starts named processes, and stops all of them when one dies or on Ctrl-C / SIGTERM."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]):
        self.commands = commands
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}

    def start(self):
        for name, argv in self.commands.items():
            self.children[name] = subprocess.Popen(argv, env=self.env, start_new_session=True)  # noqa: S603

    def wait_for_ports(self, ports: dict[str, int], timeout: float) -> bool:
        """True once each named process accepts connections on its port; False if one dies or times out."""
        deadline = time.monotonic() + timeout
        waiting = dict(ports)
        while waiting and time.monotonic() < deadline:
            for name, port in list(waiting.items()):
                if self.children[name].poll() is not None:
                    return False
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        del waiting[name]
            time.sleep(0.2)
        return not waiting

    def wait(self):
        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping:
            for name, child in self.children.items():
                if child.poll() is not None:
                    print(f"\n{name} exited with status {child.returncode}; stopping the demo.", file=sys.stderr)
                    stopping = True
                    break
            time.sleep(0.5)
        self.stop()

    def stop(self):
        for child in self.children.values():
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        print("Demo stopped.", file=sys.stderr)
