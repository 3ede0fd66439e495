"""Settings for the test suite: the local environment, with whatever DATABASE_URL / REDIS_URL CI provides."""

import os

os.environ.setdefault("GATEHOUSE_ENV", "local")
os.environ.setdefault("GATEHOUSE_ALLOWED_DOMAINS", "example.com")
os.environ.setdefault("GATEHOUSE_ADMIN_EMAILS", "root@example.com")
os.environ.setdefault("GOOGLE_CLIENT_ID", "gatehouse-test")
os.environ.setdefault("GOOGLE_CLIENT_SECRET", "gatehouse-test-secret")

from dashboard.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True
CLOUDFLARE_STRICT_RESPONSES = True

# One test database per test run, so that runs side by side on one machine never share one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory, so that real worker processes started by the tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-gatehouse-{os.getpid()}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_gatehouse_{os.getpid()}"}  # noqa: F405
