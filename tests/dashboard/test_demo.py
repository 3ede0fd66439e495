"""`make demo` as a person runs it: it starts, the sign-in page answers, Ctrl-C stops every process."""

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
    web, oidc = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env |= {"GATEHOUSE_ENV": "local", "GATEHOUSE_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    marker = f"GATEHOUSE_VAR_DIR={tmp_path}"
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(web), "--oidc-port", str(oidc)],
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
        assert len(_processes_with_env(marker)) >= 5  # demo, OpenID provider, worker, beat, web
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=30)[0]
    assert demo.returncode == 0, output
    assert "Demo stopped." in output
    time.sleep(0.5)
    assert _processes_with_env(marker) == []
    for port in (web, oidc):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
