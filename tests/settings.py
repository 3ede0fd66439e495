"""Settings for the test suite: the local environment, with whatever DATABASE_URL / REDIS_URL CI provides."""

import os

os.environ.setdefault("GATEHOUSE_ENV", "local")
os.environ.setdefault("GATEHOUSE_ALLOWED_DOMAINS", "example.com")
os.environ.setdefault("GATEHOUSE_ADMIN_EMAILS", "root@example.com")
os.environ.setdefault("GOOGLE_CLIENT_ID", "gatehouse-test")
os.environ.setdefault("GOOGLE_CLIENT_SECRET", "gatehouse-test-secret")

from dashboard.settings import *  # noqa: F403

CELERY_TASK_ALWAYS_EAGER = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory, so that real worker processes started by the tests see the same database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-gatehouse.sqlite3")}  # noqa: F405
