"""Gatehouse settings, read from the environment (see .env.example).

GATEHOUSE_ENV=production (the default) demands a real secret key and HTTPS everywhere;
GATEHOUSE_ENV=local is what `make demo` and the test suite run with: plain HTTP on loopback,
SQLite and a broker that needs no server unless DATABASE_URL / REDIS_URL say otherwise.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GATEHOUSE_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


GATEHOUSE_ENV = os.environ.get("GATEHOUSE_ENV", "production")
if GATEHOUSE_ENV not in {"production", "local"}:
    raise ImproperlyConfigured("GATEHOUSE_ENV must be 'production' or 'local'")
LOCAL = GATEHOUSE_ENV == "local"

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not LOCAL:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when GATEHOUSE_ENV=production")
    SECRET_KEY = "local-only-key-never-used-in-production-" + "x" * 24

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost" if LOCAL else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "dashboard",
    "tunnels",
    "discovery",
    "vendors",
    "alerts",
]

MIDDLEWARE = [
    "dashboard.middleware.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "dashboard.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "dashboard.middleware.QueueMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "dashboard.middleware.HtmxMessagesMiddleware",
]

ROOT_URLCONF = "dashboard.root_urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "alerts.context_processors.navigation",
            ],
        },
    },
]

if not os.environ.get("DATABASE_URL"):
    # The embedded default keeps its SQLite file (and the broker's folders) under var/.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'gatehouse.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat write to one SQLite file at once in the demo.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "dashboard.User"
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard:home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
AUTH_PASSWORD_VALIDATORS: list = []

# --- Sign-in: Google through OpenID Connect, social accounts only -------------------------------------
# The same allauth code path talks to accounts.google.com in production and to a local OpenID provider
# in the demo and the tests; only the server URL differs.
GATEHOUSE_ALLOWED_DOMAINS = [d.lower() for d in env_list("GATEHOUSE_ALLOWED_DOMAINS")]
GATEHOUSE_ADMIN_EMAILS = [e.lower() for e in env_list("GATEHOUSE_ADMIN_EMAILS")]
GATEHOUSE_OIDC_SERVER_URL = os.environ.get("GATEHOUSE_OIDC_SERVER_URL", "https://accounts.google.com")
SOCIALACCOUNT_ONLY = True
SOCIALACCOUNT_ADAPTER = "dashboard.adapters.GoogleWorkspaceAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_STORE_TOKENS = False
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = {
    "openid_connect": {
        "OAUTH_PKCE_ENABLED": True,
        "APPS": [
            {
                "provider_id": "google",
                "name": "Google",
                "client_id": os.environ.get("GOOGLE_CLIENT_ID", ""),
                "secret": os.environ.get("GOOGLE_CLIENT_SECRET", ""),
                "settings": {
                    "server_url": GATEHOUSE_OIDC_SERVER_URL,
                    # The access rule is judged on the ID token's own claims, not on userinfo.
                    "fetch_userinfo": False,
                    "auth_params": {"prompt": "select_account"},
                },
            }
        ],
    }
}

# --- Security ---------------------------------------------------------------------------------------------
HTTPS = not LOCAL
SECURE_SSL_REDIRECT = HTTPS and env_bool("GATEHOUSE_SSL_REDIRECT", True)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(timedelta(hours=12).total_seconds())
SECURE_HSTS_SECONDS = int(timedelta(days=365).total_seconds()) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF, "https:"] if HTTPS else [CSP.SELF, "http://127.0.0.1:*", "http://localhost:*"],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
}
# Only this many reverse proxies in front of Gatehouse are trusted to append to X-Forwarded-For...
GATEHOUSE_TRUSTED_PROXY_COUNT = int(os.environ.get("GATEHOUSE_TRUSTED_PROXY_COUNT", "0"))
# ...and only on connections from these addresses (CIDR, comma-separated; loopback unless set): the address the
# nearest proxy connects from. From anywhere else X-Forwarded-For is the client's own word and is ignored.
GATEHOUSE_TRUSTED_PROXIES = [
    str(ipaddress.ip_network(n, strict=False)) for n in env_list("GATEHOUSE_TRUSTED_PROXIES", "127.0.0.0/8,::1/128")
]
# True only when that proxy sets X-Request-ID on every request, replacing any the client sent; otherwise a
# client's X-Request-ID is ignored and Gatehouse makes its own.
GATEHOUSE_PROXY_SETS_REQUEST_ID = env_bool("GATEHOUSE_PROXY_SETS_REQUEST_ID", False)

# --- Static files -----------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Local runs serve straight from static/ through the finders; production serves what collectstatic gathered.
STATIC_ROOT = None if LOCAL else BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not LOCAL
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = LOCAL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Mail ------------------------------------------------------------------------------------------------
_mail_backend = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if LOCAL else "django.core.mail.backends.smtp.EmailBackend",
)
MAILERS: dict[str, dict[str, Any]] = {"default": {"BACKEND": _mail_backend}}
if _mail_backend.endswith("smtp.EmailBackend"):
    MAILERS["default"]["OPTIONS"] = {
        "host": os.environ.get("EMAIL_HOST", "localhost"),
        "port": int(os.environ.get("EMAIL_PORT", "25")),
        "username": os.environ.get("EMAIL_HOST_USER", ""),
        "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
        "use_tls": env_bool("EMAIL_USE_TLS", False),
        "timeout": 10,
    }
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "gatehouse@localhost")

# --- Celery ------------------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    # The embedded default: a broker that needs no server, shared by the web server, worker and beat: message files
    # in a folder, written whole and held until acked (dashboard/broker.py says why not kombu's own).
    CELERY_BROKER_TRANSPORT = "dashboard.broker:Transport"
    # Tasks run in threads of the worker process. On a broker it polls, Celery's prefork pool hands tasks to its
    # processes through one queue under a lock, and a pool process killed while holding that lock stopped every
    # other one for good (the soak's SIGKILL found it); a killed thread pool is the whole worker, which the
    # supervisor starts again and whose claimed messages go back to the queue.
    CELERY_WORKER_POOL = "threads"
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
        "claimed_folder": str(_broker_dir / "claimed"),
        "rejected_folder": str(_broker_dir / "rejected"),
        # The folder is looked at this often for new messages (kombu's default is once a second, which a click
        # would feel); listing a nearly empty folder ten times a second costs next to nothing.
        "polling_interval": 0.1,
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
# A worker holds what it works on (an operation's step, a sync, Logpush or inventory pass) through a lease of this
# length, renewed every third of it while it works (dashboard/leases.py): a killed worker's work is taken over, or
# ended with its reason, this long after its last renewal (so a few seconds: renewals are cheap).
GATEHOUSE_LEASE_SECONDS = float(os.environ.get("GATEHOUSE_LEASE_SECONDS", "9"))
# The passes that hold such a lease; the resume pass ends those whose worker stopped.
GATEHOUSE_LEASED_PASSES = [
    "tunnels.models.SyncPass",
    "discovery.models.IngestRun",
    "discovery.models.InventoryRun",
]
CELERY_TASK_IGNORE_RESULT = True
# Celery's worker and beat log through Django's LOGGING (JSON in production) rather than a format of their own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Runs tasks in the calling process; only tests and benchmarks that measure a workflow in place set it.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# The changes Gatehouse makes at Cloudflare, each kind run by the operation engine (dashboard.operations); the
# resume pass sends every active run nobody is working on back to a worker.
GATEHOUSE_OPERATION_ENGINES = [
    "vendors.workflows.VendorWorkflows",
    "vendors.tokens.TokenChanges",
    "tunnels.changes.TunnelChanges",
    "tunnels.push.PushChanges",
    "discovery.services.protection.ApplicationProtection",
]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# /readyz and `manage.py health` call the worker stale after three missed heartbeats.
GATEHOUSE_HEARTBEAT_SECONDS = float(os.environ.get("GATEHOUSE_HEARTBEAT_SECONDS", "30"))
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {
        "task": "dashboard.tasks.record_heartbeat",
        "schedule": GATEHOUSE_HEARTBEAT_SECONDS,
    },
    "operations-resume": {"task": "dashboard.tasks.operations_resume", "schedule": 30.0},
    "vendors-expire-grants": {"task": "vendors.tasks.grants_expire", "schedule": 300.0},
    "vendors-recertify": {"task": "vendors.tasks.vendors_recertify", "schedule": 3600.0},
    "vendors-refresh-access-applications": {"task": "vendors.tasks.access_apps_refresh", "schedule": 900.0},
    # Every five minutes, a twelfth of the active vendors: each is read back about hourly (vendors/drift.py).
    "vendors-drift-check": {"task": "vendors.tasks.vendors_drift_check", "schedule": 300.0},
    "tunnels-sync-cloudflare": {
        "task": "tunnels.tasks.sync_cloudflare",
        "schedule": float(os.environ.get("GATEHOUSE_TUNNEL_SYNC_SECONDS", "30")),
    },
    "discovery-logpush-poll": {
        "task": "discovery.tasks.logpush_poll",
        "schedule": float(os.environ.get("GATEHOUSE_LOGPUSH_SECONDS", "300")),
    },
    "discovery-aws-inventory": {"task": "discovery.tasks.inventory_discover_task", "schedule": 3600.0},
    "discovery-access-policies": {"task": "discovery.tasks.access_policies_refresh_task", "schedule": 900.0},
}

# --- Cloudflare ------------------------------------------------------------------------------------------
CLOUDFLARE_API_TOKEN = os.environ.get("CLOUDFLARE_API_TOKEN", "")
CLOUDFLARE_ACCOUNT_ID = os.environ.get("CLOUDFLARE_ACCOUNT_ID", "")
CLOUDFLARE_BASE_URL = os.environ.get("CLOUDFLARE_BASE_URL", "https://api.cloudflare.com/client/v4")
CLOUDFLARE_TIMEOUT = float(os.environ.get("CLOUDFLARE_TIMEOUT", "20"))
# The test suite validates every answer against the SDK's models, so the simulator cannot drift from them; in
# production a field Cloudflare adds or leaves out must not stop Gatehouse.
CLOUDFLARE_STRICT_RESPONSES = False
# Cloudflare's limit per token, and the share of it Gatehouse may spend (the rest is for other tools).
CLOUDFLARE_RATE_LIMIT = int(os.environ.get("CLOUDFLARE_RATE_LIMIT", "1200"))
CLOUDFLARE_RATE_WINDOW = float(os.environ.get("CLOUDFLARE_RATE_WINDOW", "300"))
GATEHOUSE_CLOUDFLARE_SHARE = float(os.environ.get("GATEHOUSE_CLOUDFLARE_SHARE", "0.25"))
# Part of the share that background sync leaves for clicks (onboarding, revocation).
GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE = float(os.environ.get("GATEHOUSE_CLOUDFLARE_INTERACTIVE_RESERVE", "0.2"))
GATEHOUSE_CLOUDFLARE_BUDGET_NAME = os.environ.get("GATEHOUSE_CLOUDFLARE_BUDGET_NAME", "")
# Tunnels: seconds between sync passes (status freshness), between refreshes of virtual networks, routes and
# DNS, and of each remote configuration; how long a tunnel stays degraded, or recovered, before alerts change.
GATEHOUSE_TUNNEL_SYNC_SECONDS = float(os.environ.get("GATEHOUSE_TUNNEL_SYNC_SECONDS", "30"))
GATEHOUSE_TUNNEL_SLOW_SYNC_SECONDS = float(os.environ.get("GATEHOUSE_TUNNEL_SLOW_SYNC_SECONDS", "600"))
GATEHOUSE_TUNNEL_CONFIG_SYNC_SECONDS = float(os.environ.get("GATEHOUSE_TUNNEL_CONFIG_SYNC_SECONDS", "3600"))
GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS = float(os.environ.get("GATEHOUSE_TUNNEL_ALERT_GRACE_SECONDS", "120"))
# Push events: the address Cloudflare reaches Gatehouse at (the webhook registered on connecting is this plus
# /hooks/cloudflare/); how recent the last notification must be for Gatehouse to rely on them; and, while it does,
# seconds between reads of the whole tunnel list (the calls saved go to connector rotation).
GATEHOUSE_PUBLIC_URL = os.environ.get("GATEHOUSE_PUBLIC_URL", "").rstrip("/")
GATEHOUSE_PUSH_TRUST_SECONDS = float(os.environ.get("GATEHOUSE_PUSH_TRUST_SECONDS", "21600"))
GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS = float(os.environ.get("GATEHOUSE_TUNNEL_PUSH_STATUS_SECONDS", "300"))
# Webhook posts refused for a missing or wrong secret are counted in each web process and written at most once
# per this many seconds, so a flood of them is not a database write each.
GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS = float(os.environ.get("GATEHOUSE_PUSH_REFUSAL_FLUSH_SECONDS", "5"))

# --- AWS -----------------------------------------------------------------------------------------------
AWS_REGION = os.environ.get("AWS_REGION", "us-east-1")
AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL", "")
GATEHOUSE_LOGPUSH_URL = os.environ.get("GATEHOUSE_LOGPUSH_URL", "")
GATEHOUSE_AWS_REGIONS = env_list("GATEHOUSE_AWS_REGIONS", AWS_REGION)

# One JSON object per line in production, for a log collector; plain lines for people running `make demo`.
GATEHOUSE_LOG_FORMAT = os.environ.get("GATEHOUSE_LOG_FORMAT", "plain" if LOCAL else "json")
if GATEHOUSE_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("GATEHOUSE_LOG_FORMAT is plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "dashboard.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": GATEHOUSE_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("GATEHOUSE_LOG_LEVEL", "INFO")},
    # httpx logs every request line at INFO; Gatehouse logs its Cloudflare calls itself, once, without noise.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}

GATEHOUSE_AUDIT_PAGE_SIZE = 50

# /metrics: with a token, Prometheus sends "Authorization: Bearer <token>"; without one, only these networks
# (CIDR, comma-separated; the address is the client's as the trusted proxies report it) may scrape.
GATEHOUSE_METRICS_TOKEN = os.environ.get("GATEHOUSE_METRICS_TOKEN", "")
GATEHOUSE_METRICS_NETWORKS = [
    str(ipaddress.ip_network(n, strict=False)) for n in env_list("GATEHOUSE_METRICS_NETWORKS", "127.0.0.0/8,::1/128")
]

# Alert webhooks and Slack URLs go only to public addresses, except to these networks (CIDR, comma-separated).
# Parsed here so that a typo stops the process at start rather than at the first alert.
GATEHOUSE_ALERT_ALLOWED_NETWORKS = [
    str(ipaddress.ip_network(n, strict=False)) for n in env_list("GATEHOUSE_ALERT_ALLOWED_NETWORKS")
]
