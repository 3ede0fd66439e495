"""Production settings, as compose.yaml runs them, pass Django's deployment checklist."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "GATEHOUSE_ENV": "production",
    "DJANGO_SECRET_KEY": "k3Yq9-ThisIsOnlyForTheTest-0f8b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
    "DJANGO_ALLOWED_HOSTS": "gatehouse.example.com",
    "DATABASE_URL": "postgres://gatehouse@127.0.0.1:5432/gatehouse",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def _manage(*args, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GATEHOUSE_", "DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_reports_nothing_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {k: v for k, v in PRODUCTION.items() if k != "DJANGO_SECRET_KEY"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_compose_healthchecks_use_the_readiness_checks():
    import yaml

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["beat"]["healthcheck"]["test"][2:4] == ["manage.py", "health"]
    assert "heartbeat" in services["beat"]["healthcheck"]["test"]


def test_the_image_carries_every_gatehouse_app_and_logs_json():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for app in ("dashboard", "tunnels", "discovery", "vendors", "alerts", "integrations"):
        assert f"COPY {app} {app}" in dockerfile
    assert '"--logger-class", "dashboard.logs.GunicornLogger"' in dockerfile
