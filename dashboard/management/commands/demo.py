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
WEB_PORT = 8000


class Command(BaseCommand):
    help = "Run the demo: the local OpenID provider, a Celery worker and beat, and the web server."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=WEB_PORT, help="the web server's port")
        parser.add_argument(
            "--oidc-port", type=int, default=OIDC_PORT, help="the local OpenID provider's port"
        )

    def handle(self, *args, port, oidc_port, **options):
        env = self._environment(oidc_port)
        os.environ.update(env)
        call_command("migrate", interactive=False, verbosity=0)
        broker = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        for key in ("data_folder_in", "processed_folder", "control_folder"):
            if key in broker:
                Path(broker[key]).mkdir(parents=True, exist_ok=True)

        python = sys.executable
        celery = [python, "-m", "celery", "-A", "dashboard"]
        processes = {
            "oidc": [
                python,
                "-m",
                "oidc_provider_mock",
                "--port",
                str(oidc_port),
                *[arg for identity in DEMO_IDENTITIES for arg in ("--user-claims", json.dumps(identity))],
            ],
            "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-gossip"],
            "beat": [*celery, "beat", "--loglevel", "INFO"],
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        }
        supervisor = Supervisor(processes, env={**os.environ, **env})
        supervisor.start()
        if not supervisor.wait_for_ports({"oidc": oidc_port, "web": port}, timeout=60):
            supervisor.stop()
            raise CommandError("The demo did not start; see the messages above.")
        self.stdout.write(self.style.SUCCESS(f"\nGatehouse demo: http://127.0.0.1:{port}\n"))
        self.stdout.write(
            "Sign in with Google (the local OpenID provider) and pick an identity:\n"
            "  admin@example.com      admin (GATEHOUSE_ADMIN_EMAILS)\n"
            "  operator@example.com   signs in as a viewer; the admin can make it an operator\n"
            "  viewer@example.com     viewer\n"
            "  personal@example.com   refused: no Workspace hosted-domain claim\n"
            "  someone@gmail.com      refused: domain not allowed\n"
            "Ctrl-C stops everything.\n"
        )
        supervisor.wait()

    def _environment(self, oidc_port: int) -> dict[str, str]:
        return {
            "GATEHOUSE_ENV": "local",
            "GATEHOUSE_ALLOWED_DOMAINS": os.environ.get("GATEHOUSE_ALLOWED_DOMAINS", DEMO_DOMAIN),
            "GATEHOUSE_ADMIN_EMAILS": os.environ.get("GATEHOUSE_ADMIN_EMAILS", "admin@example.com"),
            "GATEHOUSE_OIDC_SERVER_URL": f"http://127.0.0.1:{oidc_port}",
            "GOOGLE_CLIENT_ID": "gatehouse-demo",
            "GOOGLE_CLIENT_SECRET": "gatehouse-demo-secret",
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
                    print(
                        f"\n{name} exited with status {child.returncode}; stopping the demo.", file=sys.stderr
                    )
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
