"""Production logging: gunicorn and Django write one JSON object per line, and no sign-in code reaches them."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dashboard.logs import redact_query
from tests.workers import database_url

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_redact_query_hides_credentials_and_keeps_filters():
    assert redact_query("code=4/0AbC&state=xyz&scope=openid") == "code=%5Bredacted%5D&state=%5Bredacted%5D&scope=openid"
    assert redact_query("status=down&page=2") == "status=down&page=2"
    assert redact_query("") == ""


@pytest.mark.django_db(transaction=True)
def test_gunicorn_logs_json_lines_without_the_sign_in_code(tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "GATEHOUSE_ENV": "local",
        "GATEHOUSE_LOG_FORMAT": "json",
        "GATEHOUSE_VAR_DIR": str(tmp_path),
        "DATABASE_URL": database_url(),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "dashboard.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--logger-class",
        "dashboard.logs.GunicornLogger",
        "--access-logfile",
        "-",
    ]
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if _get(f"http://127.0.0.1:{port}/healthz") == 200:
                        break
                except OSError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            secret = "4/0AeaYSHsecretAuthorizationCode"
            _get(f"http://127.0.0.1:{port}/accounts/oidc/google/login/callback/?code={secret}&state=abc123")
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log.read_text()
    assert secret not in text and "abc123" not in text
    entries = [json.loads(line) for line in text.splitlines() if line.strip()]
    access = [e for e in entries if e["logger"] == "gunicorn.access"]
    callback = next(e for e in access if e["path"] == "/accounts/oidc/google/login/callback/")
    assert callback["query"] == "code=%5Bredacted%5D&state=%5Bredacted%5D"
    assert callback["status"] == 401 and len(callback["request_id"]) == 32
    # Django's own warning about the refused callback is a JSON line too.
    assert any(e["logger"] == "django.request" for e in entries)
