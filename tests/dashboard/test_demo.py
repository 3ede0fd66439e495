"""`make demo` as a person runs it: it starts, the sign-in page answers, Ctrl-C stops every process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def _processes_with_env(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_demo_serves_sign_in_and_ctrl_c_stops_everything(tmp_path):
    web, oidc, cloudflare, aws = _free_port(), _free_port(), _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env |= {"GATEHOUSE_ENV": "local", "GATEHOUSE_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    marker = f"GATEHOUSE_VAR_DIR={tmp_path}"
    demo = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "demo",
            "--port",
            str(web),
            "--oidc-port",
            str(oidc),
            "--cloudflare-port",
            str(cloudflare),
            "--aws-port",
            str(aws),
            "--logpush-records",
            "500",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # The demo prints its banner once every part accepts connections.
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "Gatehouse demo: http://127.0.0.1:" in line:
                break
        assert demo.poll() is None, "".join(lines)
        status, body = _get(f"http://127.0.0.1:{web}/accounts/login/")
        assert status == 200 and "Sign in with Google" in body
        assert _get(f"http://127.0.0.1:{web}/static/css/app.css")[0] == 200
        status, config = _get(f"http://127.0.0.1:{oidc}/.well-known/openid-configuration")
        assert status == 200 and "authorization_endpoint" in config
        assert (tmp_path / "gatehouse.sqlite3").exists()
        # The simulated Cloudflare answers the demo's token, with the seeded account.
        account = json.loads((tmp_path / "cloudflare_sim.json").read_text())["account_id"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{cloudflare}/client/v4/accounts/{account}/cfd_tunnel",
            headers={"Authorization": "Bearer gatehouse-demo-token"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["result_info"]["total_count"] > 0
        # moto holds the Logpush files the demo wrote.
        status, listing = _get(f"http://127.0.0.1:{aws}/gatehouse-logpush?list-type=2&prefix=gateway/")
        assert status == 200 and ".log.gz" in listing
        # demo, OpenID provider, simulator, moto, worker, beat, web
        assert len(_processes_with_env(marker)) >= 7
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=30)[0]
    assert demo.returncode == 0, output
    assert "Demo stopped." in output
    time.sleep(0.5)
    assert _processes_with_env(marker) == []
    for port in (web, oidc, cloudflare, aws):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
