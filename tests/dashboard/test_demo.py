"""`make demo` as a person runs it: a quiet terminal, logs in var/log/, and nothing left running however it stops."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
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


def _processes_with_env(marker: str) -> dict[int, bytes]:
    """Processes whose environment carries `marker`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue
    return found


def _wait_until_gone(marker: str, seconds: float = 10) -> dict[int, bytes]:
    deadline = time.monotonic() + seconds
    while (left := _processes_with_env(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _demo(tmp_path, web, oidc, cloudflare, aws):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"}}
    env |= {"GATEHOUSE_ENV": "local", "GATEHOUSE_VAR_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    ports = ["--port", web, "--oidc-port", oidc, "--cloudflare-port", cloudflare, "--aws-port", aws]
    return subprocess.Popen(
        [sys.executable, "manage.py", "demo", *map(str, ports), "--logpush-records", "500"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_taken_port_is_named_with_the_flag_that_moves_it_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        demo = _demo(tmp_path, _free_port(), _free_port(), taken, _free_port())
        output = demo.communicate(timeout=60)[0]
    assert demo.returncode != 0
    assert f"Port {taken} (the Cloudflare simulator) is taken; choose another with --cloudflare-port PORT." in output
    assert "Traceback" not in output
    assert not (tmp_path / "cloudflare_sim.sqlite3").exists()
    assert _processes_with_env(f"GATEHOUSE_VAR_DIR={tmp_path}") == {}


def test_ctrl_c_while_the_demo_is_starting_leaves_no_process(tmp_path):
    marker = f"GATEHOUSE_VAR_DIR={tmp_path}"
    demo = _demo(tmp_path, _free_port(), _free_port(), _free_port(), _free_port())
    try:
        # Wait until the long-running processes have been started, but not for the demo to be ready.
        deadline = time.monotonic() + 90
        while not (tmp_path / "log" / "web.log").exists():
            assert demo.poll() is None and time.monotonic() < deadline, demo.communicate()[0]
            time.sleep(0.05)
        assert len(_processes_with_env(marker)) >= 3
    finally:
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=60)[0]
    assert demo.returncode == 0, output
    assert "Demo stopped." in output and "Gatehouse demo: http" not in output
    assert _wait_until_gone(marker) == {}


def test_demo_serves_sign_in_quietly_and_a_dying_process_is_shown_and_started_again(tmp_path):
    web, oidc, cloudflare, aws = _free_port(), _free_port(), _free_port(), _free_port()
    marker = f"GATEHOUSE_VAR_DIR={tmp_path}"
    demo = _demo(tmp_path, web, oidc, cloudflare, aws)
    try:
        lines = []
        for line in demo.stdout:
            lines.append(line)
            if "Ctrl-C stops everything." in line:
                break
        assert demo.poll() is None, "".join(lines)
        # One summary, not the processes' own output: that is in var/log/.
        assert len(lines) <= 8, "".join(lines)
        assert any(f"Gatehouse demo: http://127.0.0.1:{web}" in line for line in lines)
        assert any("admin@example.com (admin)" in line for line in lines)
        logs = tmp_path / "log"
        for name in ("oidc", "cloudflare", "aws", "worker", "beat", "web", "setup"):
            assert (logs / f"{name}.log").exists(), name
        assert "celery@" in (logs / "worker.log").read_text()

        status, body = _get(f"http://127.0.0.1:{web}/accounts/login/")
        assert status == 200 and "Sign in with Google" in body
        assert _get(f"http://127.0.0.1:{web}/static/css/app.css")[0] == 200
        assert "GET /accounts/login/" in (logs / "web.log").read_text()
        status, config = _get(f"http://127.0.0.1:{oidc}/.well-known/openid-configuration")
        assert status == 200 and "authorization_endpoint" in config
        account = json.loads((tmp_path / "cloudflare_sim.json").read_text())["account_id"]
        request = urllib.request.Request(
            f"http://127.0.0.1:{cloudflare}/client/v4/accounts/{account}/cfd_tunnel",
            headers={"Authorization": "Bearer gatehouse-demo-token"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["result_info"]["total_count"] > 0
        status, listing = _get(f"http://127.0.0.1:{aws}/gatehouse-logpush?list-type=2&prefix=gateway/")
        assert status == 200 and ".log.gz" in listing
        # Vendors to revoke with one click, onboarded and verified before the demo says it is ready.
        with sqlite3.connect(tmp_path / "gatehouse.sqlite3") as db:
            vendors = db.execute(
                "SELECT v.name, v.status, v.review_due < date('now'), "
                "(SELECT COUNT(*) FROM vendors_servicetoken t WHERE t.vendor_id = v.id AND t.status = 'active'), "
                "v.domains FROM vendors_vendor v ORDER BY v.name"
            ).fetchall()
        assert [(name, status) for name, status, *_ in vendors] == [
            ("Hooli Consulting", "active"),
            ("Northwind Support", "active"),
            ("Umbrella Data Labs", "active"),
        ]
        assert [overdue for _n, _s, overdue, _t, _d in vendors] == [1, 0, 0]
        assert [tokens for _n, _s, _o, tokens, _d in vendors] == [0, 0, 1]
        assert json.loads(vendors[1][4]) == ["northwind-support.example"]
        processes = _processes_with_env(marker)
        # demo, OpenID provider, simulator, moto, worker, beat, web
        assert len(processes) >= 7

        killed = {
            name: next(pid for pid, cmdline in processes.items() if f"\0{name}\0".encode() in cmdline)
            for name in ("beat", "worker")
        }
        for pid in killed.values():
            os.kill(pid, signal.SIGKILL)
        # Shown with its log, started again after a pause, and the demo goes on.
        watchdog = threading.Timer(60, demo.kill)
        watchdog.start()
        after = []
        for line in demo.stdout:
            after.append(line)
            if sum("started again" in line for line in after) == 2:
                break
        watchdog.cancel()
        assert demo.poll() is None, "".join(after)
        restarted = _processes_with_env(marker)
        for name, pid in killed.items():
            assert any(f"{name} exited with status -9; starting it again in 1 s." in line for line in after), after
            assert any(f"\0{name}\0".encode() in cmd and new != pid for new, cmd in restarted.items()), name
        assert "beat: Starting..." in "".join(after)  # Celery beat's own first line, from beat.log
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=60)[0]
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)
            demo.communicate(timeout=60)
    assert demo.returncode == 0, output
    assert "Demo stopped." in output
    assert _wait_until_gone(marker) == {}
    for port in (web, oidc, cloudflare, aws):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0
