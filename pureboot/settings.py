"""PureBoot settings: one module, fed by environment variables.

Every variable read here is documented in README.md ("Configuration").
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from accounts import rolemap
from credentials import keys as fernet_keys
from credentials import storeconfig

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PUREBOOT_VAR_DIR", BASE_DIR / "var")).resolve()
# var/ holds the database, the secret key and the initial admin password:
# readable by the service account only.
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off)")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def _load_secret_key() -> str:
    """Return PUREBOOT_SECRET_KEY, or a key generated once into var/ with mode 600."""
    key = os.environ.get("PUREBOOT_SECRET_KEY", "").strip()
    if key:
        if len(key) < 32:
            raise ImproperlyConfigured("PUREBOOT_SECRET_KEY must be at least 32 characters")
        return key
    path = VAR_DIR / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise ImproperlyConfigured(
                f"{path} is empty or too short; delete it to regenerate"
            ) from None
        return key
    key = secrets.token_urlsafe(50)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


SECRET_KEY = _load_secret_key()
DEBUG = _env_bool("PUREBOOT_DEBUG", False)
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("PUREBOOT_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("PUREBOOT_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "pureboot",
    "audit",
    "systemsettings",
    "accounts",
    "credentials",
    "nodes",
    "workflows",
    "hypervisors",
    "approvals",
    "bootserve",
    "agent",
    "configmgmt",
    "dashboard",
    "webhooks",
    "axes",
    # Request, latency and database metrics on /metrics (pureboot.metrics).
    "django_prometheus",
]

MIDDLEWARE = [
    # Outermost: times the whole request for django-prometheus' latency metrics.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # First: the client's address (X-Forwarded-For only from trusted proxies).
    "pureboot.clientip.ClientAddressMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Failed sign-ins: lockout answers (django-axes); keep it last but for the metrics.
    "axes.middleware.AxesMiddleware",
    # Innermost: requests by view and status (django-prometheus).
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "pureboot.urls"
WSGI_APPLICATION = "pureboot.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.signin",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'pureboot.sqlite3'}",
        conn_max_age=_env_int("PUREBOOT_DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions serialise writers up front (no "database is locked"
    # half-way through a transaction); WAL lets the web process and the worker
    # read while one of them writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
elif DATABASES["default"]["ENGINE"] not in {
    "django.db.backends.postgresql",
}:
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL (postgres://) or SQLite")
# django-prometheus' wrappers of the same back-ends count queries, errors and
# connections (django_db_*); they change nothing else.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends.", 1
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The directory backends (LDAP, OIDC) are added below when configured.
AUTHENTICATION_BACKENDS = [
    # First: refuses sign-ins for a locked-out username or address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
    # A role granted for a limited time by an approved emergency-access request.
    "accounts.emergency.EmergencyAccessBackend",
]
# guardian: no anonymous user row; nothing is granted to anonymous visitors.
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("PUREBOOT_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Client input is bounded: an oversized body is a 400, never a crash.
DATA_UPLOAD_MAX_MEMORY_SIZE = _env_int("PUREBOOT_MAX_REQUEST_BYTES", 2 * 1024 * 1024, 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 2000

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if _env_bool("PUREBOOT_SECURE_COOKIES", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # simplejwt's, refusing tokens of a generation revoked since (accounts.tokens).
        "accounts.tokens.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "pureboot.api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "pureboot.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.ScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": os.environ.get("PUREBOOT_THROTTLE_ANON", "120/min"),
        "user": os.environ.get("PUREBOOT_THROTTLE_USER", "6000/min"),
        "auth": os.environ.get("PUREBOOT_THROTTLE_AUTH", "20/min"),
        "report": os.environ.get("PUREBOOT_THROTTLE_REPORT", "600/min"),
        "agent": os.environ.get("PUREBOOT_THROTTLE_AGENT", "600/min"),
    },
    "EXCEPTION_HANDLER": "pureboot.api.exceptions.exception_handler",
    # The client address is REMOTE_ADDR as ClientAddressMiddleware resolved it;
    # DRF must not read X-Forwarded-For itself (it would believe anyone's).
    "NUM_PROXIES": 0,
    "NON_FIELD_ERRORS_KEY": "non_field_errors",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=_env_int("PUREBOOT_JWT_ACCESS_MINUTES", 15, 1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(hours=_env_int("PUREBOOT_JWT_REFRESH_HOURS", 24, 1)),
    "UPDATE_LAST_LOGIN": True,
    "TOKEN_OBTAIN_SERIALIZER": "accounts.tokens.TokenObtainPairSerializer",
    "TOKEN_REFRESH_SERIALIZER": "accounts.tokens.TokenRefreshSerializer",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PureBoot API",
    "DESCRIPTION": "Provisioning controller: node registry, lifecycle and audit trail.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets ship with the package: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["pureboot.api.schema.strip_trailing_slashes"],
    "ENUM_NAME_OVERRIDES": {
        "AgentJobStatusEnum": "agent.choices.JobStatus",
        "AgentStepReportStatusEnum": ["started", "succeeded", "failed"],
    },
}


# --- Celery ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
# Proxies whose X-Forwarded-For is believed (addresses or CIDR networks,
# comma-separated), e.g. the nginx in front of gunicorn: 127.0.0.1,::1.
PUREBOOT_TRUSTED_PROXIES = [
    item.strip()
    for item in os.environ.get("PUREBOOT_TRUSTED_PROXIES", "").split(",")
    if item.strip()
]
for _proxy in PUREBOOT_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PUREBOOT_TRUSTED_PROXIES: {_proxy!r} is not an address or network"
        ) from None

# --- Prometheus metrics -------------------------------------------------------
# Who may scrape the web app's /metrics besides loopback: networks (CIDRs,
# comma-separated), and anyone sending "Authorization: Bearer <token>".
PUREBOOT_METRICS_ALLOW = [
    item.strip() for item in os.environ.get("PUREBOOT_METRICS_ALLOW", "").split(",") if item.strip()
]
for _network in PUREBOOT_METRICS_ALLOW:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PUREBOOT_METRICS_ALLOW: {_network!r} is not an address or network"
        ) from None
PUREBOOT_METRICS_TOKEN = os.environ.get("PUREBOOT_METRICS_TOKEN", "").strip()
if PUREBOOT_METRICS_TOKEN and not re.fullmatch(r"[!-~]{32,512}", PUREBOOT_METRICS_TOKEN):
    raise ImproperlyConfigured(
        "PUREBOOT_METRICS_TOKEN must be at least 32 printable characters without spaces"
    )
# A Celery worker's own /metrics (task counters, transitions it performed):
# off (0) unless a port is given; on PUREBOOT_WORKER_METRICS_ADDRESS.
PUREBOOT_WORKER_METRICS_PORT = _env_int("PUREBOOT_WORKER_METRICS_PORT", 0, 0)
if PUREBOOT_WORKER_METRICS_PORT > 65535:
    raise ImproperlyConfigured("PUREBOOT_WORKER_METRICS_PORT must be 0 (off) or 1-65535")
PUREBOOT_WORKER_METRICS_ADDRESS = (
    os.environ.get("PUREBOOT_WORKER_METRICS_ADDRESS", "127.0.0.1").strip() or "127.0.0.1"
)
try:
    ipaddress.ip_address(PUREBOOT_WORKER_METRICS_ADDRESS)
except ValueError:
    raise ImproperlyConfigured(
        "PUREBOOT_WORKER_METRICS_ADDRESS must be an IP address, got "
        f"{PUREBOOT_WORKER_METRICS_ADDRESS!r}"
    ) from None

CELERY_DIR = VAR_DIR / "celery"
CELERY_DIR.mkdir(exist_ok=True)  # beat's schedule file lives here in every mode
# Throttle counters live where every process sees them: Redis when configured,
# else the database (table pureboot_cache, made by a migration).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "pureboot",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "pureboot_cache",
        }
    }
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    # Embedded default: tasks queued by the web process run in-process
    # (eager); `make run` also starts a worker with embedded beat on kombu's
    # filesystem transport under var/celery so periodic tasks still fire.
    for sub in ("out", "processed", "control"):
        (CELERY_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DIR / "out"),
        "data_folder_out": str(CELERY_DIR / "out"),
        "processed_folder": str(CELERY_DIR / "processed"),
        # Exchange tables (worker control/broadcast); kombu's default is ./control.
        "control_folder": str(CELERY_DIR / "control"),
        "store_processed": False,
    }
    CELERY_RESULT_BACKEND = None
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(CELERY_DIR / "beat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- PureBoot -------------------------------------------------------------
# The URL nodes use to reach this controller (installer configs embed it);
# empty: taken from the request's host.
PUREBOOT_PUBLIC_URL = os.environ.get("PUREBOOT_PUBLIC_URL", "").strip()
# Image templates and extracted boot files live here (content-addressed).
PUREBOOT_IMAGE_ROOT = Path(os.environ.get("PUREBOOT_IMAGE_ROOT", VAR_DIR / "images")).resolve()
# A temporary upload or conversion file untouched this long was abandoned (a
# server killed mid-upload): swept at start and every 15 minutes.
PUREBOOT_INCOMING_STALE_MINUTES = _env_int("PUREBOOT_INCOMING_STALE_MINUTES", 60, 1)
PUREBOOT_BOOT_ROOT = Path(os.environ.get("PUREBOOT_BOOT_ROOT", VAR_DIR / "boot")).resolve()
PUREBOOT_MAX_IMAGE_BYTES = _env_int("PUREBOOT_MAX_IMAGE_BYTES", 64 * 1024**3, 1024)
# Set to an nginx internal location (e.g. /protected-images/) to let nginx
# send image files (X-Accel-Redirect) instead of Django; boot files then go
# the same way.
PUREBOOT_ACCEL_REDIRECT = os.environ.get("PUREBOOT_ACCEL_REDIRECT", "").strip()
# The nginx internal location aliased to PUREBOOT_BOOT_ROOT: boot files go
# through it whenever PUREBOOT_ACCEL_REDIRECT is set.
PUREBOOT_ACCEL_BOOT_PREFIX = (
    os.environ.get("PUREBOOT_ACCEL_BOOT_PREFIX", "").strip() or "/protected-boot/"
)
if not PUREBOOT_ACCEL_BOOT_PREFIX.startswith("/"):
    raise ImproperlyConfigured("PUREBOOT_ACCEL_BOOT_PREFIX must start with /")
# A node stuck in `installing` this long is failed by the periodic task.
PUREBOOT_INSTALL_TIMEOUT_MINUTES = _env_int("PUREBOOT_INSTALL_TIMEOUT_MINUTES", 120, 1)
# Boot path: register unknown machines as discovered; how a waiting machine
# polls; how many install boots a node gets before it is failed.
PUREBOOT_DISCOVERY = _env_bool("PUREBOOT_DISCOVERY", True)
# Unauthenticated discovery is bounded (bootserve/discovery.py): new machines
# registered a minute per source address (0: no limit), and the nodes that may
# wait in `discovered` at once (0: no cap).
PUREBOOT_DISCOVERY_RATE = _env_int("PUREBOOT_DISCOVERY_RATE", 30, 0)
PUREBOOT_DISCOVERY_MAX = _env_int("PUREBOOT_DISCOVERY_MAX", 2000, 0)
# Boot requests within this many seconds of the start of an install attempt
# belong to that boot and count no new attempt.
PUREBOOT_BOOT_SESSION_SECONDS = _env_int("PUREBOOT_BOOT_SESSION_SECONDS", 120, 1)
PUREBOOT_BOOT_POLL_SECONDS = _env_int("PUREBOOT_BOOT_POLL_SECONDS", 10, 1)
PUREBOOT_BOOT_WAIT_SECONDS = _env_int("PUREBOOT_BOOT_WAIT_SECONDS", 600, 1)
PUREBOOT_MAX_INSTALL_ATTEMPTS = _env_int("PUREBOOT_MAX_INSTALL_ATTEMPTS", 3, 1)
# A boot request refreshes a node's last_seen_at when it is older than this
# (0: every request); a boot storm then writes once per node and window.
PUREBOOT_LAST_SEEN_SECONDS = _env_int("PUREBOOT_LAST_SEEN_SECONDS", 60, 0)
# Boot records (bootserve/records.py): how many days they are kept (pruned by
# the beat task and manage.py prune_boot_records); identical requests within
# this many seconds fold into one row's count (0: every request is a row); new
# rows a minute one client address may add, per process (0: no cap).
PUREBOOT_BOOT_RECORD_DAYS = _env_int("PUREBOOT_BOOT_RECORD_DAYS", 30, 1)
PUREBOOT_BOOT_RECORD_COALESCE_SECONDS = _env_int("PUREBOOT_BOOT_RECORD_COALESCE_SECONDS", 60, 0)
PUREBOOT_BOOT_RECORD_RATE = _env_int("PUREBOOT_BOOT_RECORD_RATE", 120, 0)
# The TFTP daemon (manage.py bootserve): where it listens.
PUREBOOT_TFTP_ADDRESS = os.environ.get("PUREBOOT_TFTP_ADDRESS", "0.0.0.0").strip()
PUREBOOT_TFTP_PORT = _env_int("PUREBOOT_TFTP_PORT", 69, 1)
# How many transfers it runs at once (read requests past it are dropped; the
# client resends), its listening socket's receive buffer, and the memory its
# cache of small boot files may hold (files over 8 MiB are never cached).
PUREBOOT_TFTP_MAX_TRANSFERS = _env_int("PUREBOOT_TFTP_MAX_TRANSFERS", 1000, 1)
# One client address's concurrent transfers at most, so one host cannot take
# every slot (a PXE client fetches its files one after another).
PUREBOOT_TFTP_MAX_PER_CLIENT = _env_int("PUREBOOT_TFTP_MAX_PER_CLIENT", 16, 1)
PUREBOOT_TFTP_RCVBUF = _env_int("PUREBOOT_TFTP_RCVBUF", 4 * 1024 * 1024, 65536)
PUREBOOT_TFTP_CACHE_MB = _env_int("PUREBOOT_TFTP_CACHE_MB", 64, 0)
# Its database helper (PXELINUX/GRUB/Pi configs) exits after this long unused.
PUREBOOT_TFTP_HELPER_IDLE_SECONDS = _env_int("PUREBOOT_TFTP_HELPER_IDLE_SECONDS", 600, 1)
# Its Prometheus endpoint: off (0) unless a port is given; loopback by default.
PUREBOOT_TFTP_METRICS_PORT = _env_int("PUREBOOT_TFTP_METRICS_PORT", 0, 0)
if PUREBOOT_TFTP_METRICS_PORT > 65535:
    raise ImproperlyConfigured("PUREBOOT_TFTP_METRICS_PORT must be 0 (off) or 1-65535")
PUREBOOT_TFTP_METRICS_ADDRESS = (
    os.environ.get("PUREBOOT_TFTP_METRICS_ADDRESS", "127.0.0.1").strip() or "127.0.0.1"
)
# Provisioning-only DHCP (dnsmasq, Rule E). Empty hosts dir: no sync.
PUREBOOT_DHCP_HOSTSDIR = os.environ.get("PUREBOOT_DHCP_HOSTSDIR", "").strip()
if PUREBOOT_DHCP_HOSTSDIR and not os.path.isabs(PUREBOOT_DHCP_HOSTSDIR):
    raise ImproperlyConfigured("PUREBOOT_DHCP_HOSTSDIR must be an absolute path")
PUREBOOT_DHCP_MODE = os.environ.get("PUREBOOT_DHCP_MODE", "proxy").strip() or "proxy"
if PUREBOOT_DHCP_MODE not in {"full", "proxy"}:
    raise ImproperlyConfigured("PUREBOOT_DHCP_MODE must be full or proxy")
PUREBOOT_DHCP_INTERFACE = os.environ.get("PUREBOOT_DHCP_INTERFACE", "").strip()
PUREBOOT_DHCP_RANGE = os.environ.get("PUREBOOT_DHCP_RANGE", "").strip()
PUREBOOT_DHCP_NETMASK = os.environ.get("PUREBOOT_DHCP_NETMASK", "").strip()
PUREBOOT_DHCP_ROUTER = os.environ.get("PUREBOOT_DHCP_ROUTER", "").strip()
PUREBOOT_DHCP_DNS = os.environ.get("PUREBOOT_DHCP_DNS", "").strip()
PUREBOOT_DHCP_LEASE_TIME = os.environ.get("PUREBOOT_DHCP_LEASE_TIME", "1h").strip()
PUREBOOT_DHCP_PROXY_SUBNET = os.environ.get("PUREBOOT_DHCP_PROXY_SUBNET", "").strip()
PUREBOOT_DHCP_TFTP_SERVER = os.environ.get("PUREBOOT_DHCP_TFTP_SERVER", "").strip()
PUREBOOT_DHCP_HTTP_BASE = os.environ.get("PUREBOOT_DHCP_HTTP_BASE", "").strip()
PUREBOOT_DHCP_IPV6_RA = _env_bool("PUREBOOT_DHCP_IPV6_RA", False)
PUREBOOT_DHCP_BIOS_LOADER = os.environ.get("PUREBOOT_DHCP_BIOS_LOADER", "ipxe").strip()
# dnsmasq's lease file: written into its config by dhcp_config, read by
# /boot/http to recognise UEFI HTTP Boot clients by their address.
PUREBOOT_DHCP_LEASEFILE = os.environ.get("PUREBOOT_DHCP_LEASEFILE", "").strip()
if PUREBOOT_DHCP_LEASEFILE and not os.path.isabs(PUREBOOT_DHCP_LEASEFILE):
    raise ImproperlyConfigured("PUREBOOT_DHCP_LEASEFILE must be an absolute path")
# Full DHCP mode: the executable dnsmasq runs on every lease event
# (dhcp-script), e.g. a wrapper running `manage.py record_dhcp_event "$@"`,
# which writes a DHCP boot record. Proxy DHCP grants no leases: refused there.
PUREBOOT_DHCP_SCRIPT = os.environ.get("PUREBOOT_DHCP_SCRIPT", "").strip()
if PUREBOOT_DHCP_SCRIPT and not os.path.isabs(PUREBOOT_DHCP_SCRIPT):
    raise ImproperlyConfigured("PUREBOOT_DHCP_SCRIPT must be an absolute path")
# Keys that encrypt credentials at rest (first encrypts, all decrypt):
# PUREBOOT_FERNET_KEYS, or a key file generated once into var/ (mode 600).
PUREBOOT_FERNET_KEYS, PUREBOOT_FERNET_KEYS_SOURCE = fernet_keys.load_keys(VAR_DIR)
# External secret stores (credentials/stores/): HashiCorp Vault / OpenBao KV v2
# and Azure Key Vault. Each is off ({}) until its URL is set; tokens, secret
# IDs and client secrets are read from the files named here, at use time.
PUREBOOT_VAULT = storeconfig.vault_config(os.environ)
PUREBOOT_AZURE_KEYVAULT = storeconfig.azure_config(os.environ)
# Hypervisors (hypervisors/): the timeout of each call to a hypervisor's API
# (connect, request, or waiting for one of its tasks), how many times a call
# that failed for a transient reason (unreachable, busy, a server error) is
# tried in all, with backoff from 30 s doubling to 30 min, and the hard limit
# of one worker task, after which a running operation counts as lost.
PUREBOOT_HYPERVISOR_TIMEOUT = _env_int("PUREBOOT_HYPERVISOR_TIMEOUT", 60, 1)
PUREBOOT_HYPERVISOR_MAX_ATTEMPTS = _env_int("PUREBOOT_HYPERVISOR_MAX_ATTEMPTS", 5, 1)
PUREBOOT_HYPERVISOR_TASK_LIMIT = _env_int("PUREBOOT_HYPERVISOR_TASK_LIMIT", 1800, 60)

# Webhooks (webhooks/): how often new audit events become deliveries and due
# ones are queued, the connect and read timeouts of one POST, how many times a
# delivery is tried in all, and the first retry's wait (doubling, at most 1 h).
PUREBOOT_WEBHOOK_DISPATCH_SECONDS = _env_int("PUREBOOT_WEBHOOK_DISPATCH_SECONDS", 5, 1)
PUREBOOT_WEBHOOK_TIMEOUT = _env_int("PUREBOOT_WEBHOOK_TIMEOUT", 10, 1)
if PUREBOOT_WEBHOOK_TIMEOUT > 120:
    raise ImproperlyConfigured("PUREBOOT_WEBHOOK_TIMEOUT must be 1-120 seconds")
PUREBOOT_WEBHOOK_MAX_ATTEMPTS = _env_int("PUREBOOT_WEBHOOK_MAX_ATTEMPTS", 8, 1)
PUREBOOT_WEBHOOK_RETRY_SECONDS = _env_int("PUREBOOT_WEBHOOK_RETRY_SECONDS", 30, 1)
# Finished (succeeded or failed) webhook deliveries last attempted longer ago are
# deleted by the hourly webhooks.prune task.
PUREBOOT_WEBHOOK_DELIVERY_DAYS = _env_int("PUREBOOT_WEBHOOK_DELIVERY_DAYS", 30, 1)

# SIEM forwarding (audit/forwarding.py): the audit trail as RFC 5424 syslog to
# tcp://host:port (RFC 6587 octet counting) or tls://host:port (RFC 5425); empty:
# off. The CA bundle that verifies the collector's certificate (default: the
# system's), an optional client certificate and key, the timeout of one
# connection, and how often the periodic task forwards new events.
PUREBOOT_SYSLOG_URL = os.environ.get("PUREBOOT_SYSLOG_URL", "").strip()
if PUREBOOT_SYSLOG_URL and not re.fullmatch(
    r"(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}", PUREBOOT_SYSLOG_URL
):
    raise ImproperlyConfigured(
        "PUREBOOT_SYSLOG_URL must be tcp://host:port or tls://host:port (UDP is not offered: "
        "it loses events)"
    )
if PUREBOOT_SYSLOG_URL and not 1 <= int(PUREBOOT_SYSLOG_URL.rsplit(":", 1)[1]) <= 65535:
    raise ImproperlyConfigured("PUREBOOT_SYSLOG_URL: the port must be 1-65535")
PUREBOOT_SYSLOG_CA_FILE = os.environ.get("PUREBOOT_SYSLOG_CA_FILE", "").strip()
PUREBOOT_SYSLOG_CERT_FILE = os.environ.get("PUREBOOT_SYSLOG_CERT_FILE", "").strip()
PUREBOOT_SYSLOG_KEY_FILE = os.environ.get("PUREBOOT_SYSLOG_KEY_FILE", "").strip()
for _name, _path in (
    ("PUREBOOT_SYSLOG_CA_FILE", PUREBOOT_SYSLOG_CA_FILE),
    ("PUREBOOT_SYSLOG_CERT_FILE", PUREBOOT_SYSLOG_CERT_FILE),
    ("PUREBOOT_SYSLOG_KEY_FILE", PUREBOOT_SYSLOG_KEY_FILE),
):
    if _path and not os.path.isfile(_path):
        raise ImproperlyConfigured(f"{_name}: no such file {_path}")
    if _path and not PUREBOOT_SYSLOG_URL.startswith("tls://"):
        raise ImproperlyConfigured(f"{_name} needs PUREBOOT_SYSLOG_URL=tls://host:port")
if bool(PUREBOOT_SYSLOG_CERT_FILE) != bool(PUREBOOT_SYSLOG_KEY_FILE):
    raise ImproperlyConfigured("PUREBOOT_SYSLOG_CERT_FILE and PUREBOOT_SYSLOG_KEY_FILE go together")
PUREBOOT_SYSLOG_TIMEOUT = _env_int("PUREBOOT_SYSLOG_TIMEOUT", 10, 1)
PUREBOOT_SYSLOG_INTERVAL_SECONDS = _env_int("PUREBOOT_SYSLOG_INTERVAL_SECONDS", 10, 1)

# The agent (agent/): the Ed25519 key that signs wipe certificates (made on
# first use, mode 600), how long a job may go without a word from its agent
# before it fails as lost, whether discovered machines boot the agent once to
# report their hardware, and how a wipe is verified ("full" reads every
# block back; "sample:N" reads N spread regions).
PUREBOOT_SIGNING_KEY_FILE = Path(
    os.environ.get("PUREBOOT_SIGNING_KEY_FILE", VAR_DIR / "signing" / "ed25519.pem")
).resolve()
PUREBOOT_AGENT_LOST_MINUTES = _env_int("PUREBOOT_AGENT_LOST_MINUTES", 15, 1)
PUREBOOT_AGENT_HEARTBEAT_SECONDS = _env_int("PUREBOOT_AGENT_HEARTBEAT_SECONDS", 15, 1)
PUREBOOT_AGENT_INVENTORY = os.environ.get("PUREBOOT_AGENT_INVENTORY", "0") == "1"
PUREBOOT_WIPE_VERIFY = os.environ.get("PUREBOOT_WIPE_VERIFY", "full")
if not re.fullmatch(r"full|sample:[1-9][0-9]{0,5}", PUREBOOT_WIPE_VERIFY):
    raise ImproperlyConfigured('PUREBOOT_WIPE_VERIFY must be "full" or "sample:N" (N >= 1)')
# 1:1 migration over iSCSI: the tgtadm command that reaches the controller's
# tgt daemon (e.g. "sudo -n /usr/sbin/tgtadm" where the web app does not run
# as root; "-C N" picks a tgtd control port), the address agents reach the
# iSCSI portal at (default: PUREBOOT_PUBLIC_URL's host), where the temporary
# LUN files live, and the IQN prefix of the targets PureBoot makes.
PUREBOOT_ISCSI_TGTADM = os.environ.get("PUREBOOT_ISCSI_TGTADM", "tgtadm").strip()
PUREBOOT_ISCSI_PORTAL = os.environ.get("PUREBOOT_ISCSI_PORTAL", "").strip()
PUREBOOT_ISCSI_DIR = Path(os.environ.get("PUREBOOT_ISCSI_DIR", VAR_DIR / "iscsi")).resolve()
PUREBOOT_ISCSI_IQN_PREFIX = os.environ.get("PUREBOOT_ISCSI_IQN_PREFIX", "iqn.2026-12.org.pureboot")
if not re.fullmatch(r"iqn\.\d{4}-\d{2}\.[a-z0-9.-]{1,200}", PUREBOOT_ISCSI_IQN_PREFIX):
    raise ImproperlyConfigured(
        "PUREBOOT_ISCSI_IQN_PREFIX must look like iqn.YYYY-MM.reversed.domain (lower case)"
    )
# How often the periodic stuck-install check runs.
PUREBOOT_INSTALL_CHECK_SECONDS = _env_int("PUREBOOT_INSTALL_CHECK_SECONDS", 60, 5)

# NFS root filesystems for diskless nodes, served by nfs-ganesha (bootserve/nfsroot.py):
# where the read-only templates and the per-node writable overlays live, the
# IPv4 address nodes mount them from (empty: NFS root is off, and a workflow
# with an nfs_root task is refused), the port ganesha listens on, the networks
# that may mount the templates and, when a node's own address is not known
# from the DHCP leases, its overlay (empty: templates to anyone, such an
# overlay to no one), the ganesha config file PureBoot keeps (empty: not
# written) and ganesha's pid file (SIGHUP after each change; empty: no reload).
PUREBOOT_NFSROOT_DIR = Path(os.environ.get("PUREBOOT_NFSROOT_DIR", VAR_DIR / "nfsroot")).resolve()
PUREBOOT_NFS_SERVER = os.environ.get("PUREBOOT_NFS_SERVER", "").strip()
if PUREBOOT_NFS_SERVER:
    try:
        ipaddress.IPv4Address(PUREBOOT_NFS_SERVER)
    except ValueError:
        raise ImproperlyConfigured("PUREBOOT_NFS_SERVER must be an IPv4 address") from None
    if not re.fullmatch(r"/[A-Za-z0-9._/+-]*", str(PUREBOOT_NFSROOT_DIR)):
        raise ImproperlyConfigured(
            "PUREBOOT_NFSROOT_DIR may hold only letters, digits and . _ / + - (it is "
            "written into the ganesha config)"
        )
PUREBOOT_NFS_PORT = _env_int("PUREBOOT_NFS_PORT", 2049, 1)
if PUREBOOT_NFS_PORT > 65535:
    raise ImproperlyConfigured("PUREBOOT_NFS_PORT must be 1-65535")
PUREBOOT_NFS_CLIENTS = [
    item.strip() for item in os.environ.get("PUREBOOT_NFS_CLIENTS", "").split(",") if item.strip()
]
for _network in PUREBOOT_NFS_CLIENTS:
    try:
        ipaddress.IPv4Network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"PUREBOOT_NFS_CLIENTS: {_network!r} is not an IPv4 address or network"
        ) from None
PUREBOOT_NFS_GANESHA_CONFIG = os.environ.get("PUREBOOT_NFS_GANESHA_CONFIG", "").strip()
PUREBOOT_NFS_GANESHA_PIDFILE = os.environ.get("PUREBOOT_NFS_GANESHA_PIDFILE", "").strip()
for _name, _path in (
    ("PUREBOOT_NFS_GANESHA_CONFIG", PUREBOOT_NFS_GANESHA_CONFIG),
    ("PUREBOOT_NFS_GANESHA_PIDFILE", PUREBOOT_NFS_GANESHA_PIDFILE),
):
    if _path and not os.path.isabs(_path):
        raise ImproperlyConfigured(f"{_name} must be an absolute path")

# Windows Setup reads install.wim from the boot root exported read-only over
# SMB (manage.py smb_config prints the Samba share): its UNC path as nodes
# reach it, e.g. \\pureboot.example.com\pureboot-boot. Empty: Windows
# workflows are refused at save.
PUREBOOT_WINDOWS_SHARE = os.environ.get("PUREBOOT_WINDOWS_SHARE", "").strip()
if PUREBOOT_WINDOWS_SHARE and not re.fullmatch(
    r"\\\\[A-Za-z0-9.-]{1,253}\\[A-Za-z0-9$._-]{1,80}", PUREBOOT_WINDOWS_SHARE
):
    raise ImproperlyConfigured(
        "PUREBOOT_WINDOWS_SHARE must be a UNC share path such as \\\\host\\share"
    )

# Active Directory domain join (workflows.domainjoin): words put before every
# samba-tool and net command PureBoot runs against a domain controller
# (shell-like quoting), e.g. "ip netns exec ad" when the domain is reached from
# another network namespace; and how long each such command may take.
try:
    PUREBOOT_SAMBA_COMMAND_PREFIX = shlex.split(os.environ.get("PUREBOOT_SAMBA_COMMAND_PREFIX", ""))
except ValueError as _exc:
    raise ImproperlyConfigured(f"PUREBOOT_SAMBA_COMMAND_PREFIX: {_exc}") from None
PUREBOOT_SAMBA_TIMEOUT = _env_int("PUREBOOT_SAMBA_TIMEOUT", 60, 5)

# --- logging: no secret in a log ----------------------------------------------
# One handler, and it redacts node tokens, passwords and bearer tokens
# (pureboot/logredact.py). Django's own default handlers on the "django" logger
# (a console handler when DEBUG is on, mail to ADMINS) are removed: they would
# write request paths, tokens included, unredacted; django.request lines reach
# the handler below through the root logger. Celery workers log through it
# too (pureboot/celery.py), and so does the development server.
# PUREBOOT_LOG_FORMAT: text (default) or json, one object per line with the
# request id, actor, node and client address (audit/logformat.py), for ELK/Loki.
PUREBOOT_LOG_FORMAT = os.environ.get("PUREBOOT_LOG_FORMAT", "").strip().lower() or "text"
if PUREBOOT_LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured("PUREBOOT_LOG_FORMAT must be text or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # "context" adds the request id, actor and client address to each record
    # (read by the json formatter); "redact" runs last, before any formatter.
    "filters": {
        "context": {"()": "audit.logformat.RequestContextFilter"},
        "redact": {"()": "pureboot.logredact.RedactSecrets"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "audit.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": PUREBOOT_LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("PUREBOOT_LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # pysaml2 logs whole assertions at DEBUG and every step at INFO; its
        # schema library announces each schema it loads.
        "saml2": {"level": "WARNING"},
        "xmlschema": {"level": "WARNING"},
        # The Azure SDK logs every request's URL and headers at INFO (secret names).
        "azure": {"level": "WARNING"},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# --- end of logging ------------------------------------------------------------

# --- four-eye approvals -----------------------------------------------------
# How long a request waits for its approvals (hours), per action name where
# PUREBOOT_APPROVAL_WINDOWS says so (JSON, e.g. {"retire": 24}), and how many
# people besides the requester must approve.
PUREBOOT_APPROVAL_HOURS = _env_int("PUREBOOT_APPROVAL_HOURS", 4, 1)
PUREBOOT_APPROVALS_REQUIRED = _env_int("PUREBOOT_APPROVALS_REQUIRED", 1, 1)
try:
    PUREBOOT_APPROVAL_WINDOWS = {
        str(k): int(v)
        for k, v in json.loads(os.environ.get("PUREBOOT_APPROVAL_WINDOWS", "") or "{}").items()
        if int(v) >= 1
    }
except (ValueError, AttributeError, TypeError) as exc:
    raise ImproperlyConfigured(
        'PUREBOOT_APPROVAL_WINDOWS: a JSON object of action -> hours, e.g. {"retire": 24}'
    ) from exc

# Emergency access: the longest time one approved request may grant a role.
PUREBOOT_EMERGENCY_MAX_HOURS = _env_int("PUREBOOT_EMERGENCY_MAX_HOURS", 8, 1)
# A new account, or one just given a role that can approve, approves nothing
# for this many hours (no sock-puppet second person); run-time setting
# approver_cooling_off_hours.
PUREBOOT_APPROVER_COOLING_OFF_HOURS = _env_int("PUREBOOT_APPROVER_COOLING_OFF_HOURS", 24, 0)
# Where an approved audit-log clearing writes its export (mode 600 files).
PUREBOOT_AUDIT_EXPORT_DIR = os.environ.get("PUREBOOT_AUDIT_EXPORT_DIR", "").strip() or str(
    Path(VAR_DIR) / "audit-exports"
)
if not os.path.isabs(PUREBOOT_AUDIT_EXPORT_DIR):
    raise ImproperlyConfigured("PUREBOOT_AUDIT_EXPORT_DIR must be an absolute path")

# The approval pages send people to the admin's sign-in page.
LOGIN_URL = "/admin/login/"

# --- sign-in rate limiting (django-axes) ------------------------------------
# After PUREBOOT_LOGIN_FAILURE_LIMIT failed sign-ins for one username from one
# address, that pair is locked out for PUREBOOT_LOGIN_LOCKOUT_MINUTES (admin,
# approval pages and /api/v1/auth/token alike). Attempts live in the database
# (axes' database handler), shared by every process. Lockouts are audit events.
AXES_FAILURE_LIMIT = _env_int("PUREBOOT_LOGIN_FAILURE_LIMIT", 5, 1)
AXES_COOLOFF_TIME = timedelta(minutes=_env_int("PUREBOOT_LOGIN_LOCKOUT_MINUTES", 15, 1))
# Per account AND address: failures from one address lock that address out of
# that account only, so one address cannot lock every account, and the owner
# signing in from elsewhere is not locked out. The "auth" throttle below
# limits how fast one address may try at all.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# The address is the one ClientAddressMiddleware resolved (trusted proxies only).
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# 429 with Retry-After on every sign-in page (the token endpoint says the same).
AXES_LOCKOUT_CALLABLE = "accounts.signin.lockout_response"

# --- directory sign-in: LDAP / Active Directory (django-auth-ldap) ------------
# On only when PUREBOOT_LDAP_SERVER_URI is set; django-auth-ldap is the
# optional "ldap" extra. Roles come from PUREBOOT_LDAP_ROLE_GROUPS at every
# sign-in (accounts/directory.py). The bind password is read here and nowhere
# logged.
PUREBOOT_LDAP_SERVER_URI = os.environ.get("PUREBOOT_LDAP_SERVER_URI", "").strip()
PUREBOOT_LDAP_ROLE_GROUPS = rolemap.parse_role_map(
    "PUREBOOT_LDAP_ROLE_GROUPS", os.environ.get("PUREBOOT_LDAP_ROLE_GROUPS", ""), fold_case=True
)
if PUREBOOT_LDAP_SERVER_URI:
    try:
        import ldap
        from django_auth_ldap import config as ldap_config
    except ImportError as exc:
        raise ImproperlyConfigured(
            "PUREBOOT_LDAP_SERVER_URI is set but django-auth-ldap is not installed: "
            'pip install -e ".[ldap]" (building python-ldap needs the Debian packages '
            "libldap-dev libsasl2-dev gcc python3-dev)"
        ) from exc
    _LDAP_GROUP_TYPES = {
        "groupOfNames": (ldap_config.GroupOfNamesType, "(objectClass=groupOfNames)"),
        "nestedGroupOfNames": (ldap_config.NestedGroupOfNamesType, "(objectClass=groupOfNames)"),
        "groupOfUniqueNames": (
            ldap_config.GroupOfUniqueNamesType,
            "(objectClass=groupOfUniqueNames)",
        ),
        "posixGroup": (ldap_config.PosixGroupType, "(objectClass=posixGroup)"),
        "activeDirectory": (ldap_config.NestedActiveDirectoryGroupType, "(objectClass=group)"),
    }
    _ldap_user_base = os.environ.get("PUREBOOT_LDAP_USER_SEARCH_BASE", "").strip()
    _ldap_group_base = os.environ.get("PUREBOOT_LDAP_GROUP_SEARCH_BASE", "").strip()
    if not _ldap_user_base or not _ldap_group_base:
        raise ImproperlyConfigured(
            "PUREBOOT_LDAP_SERVER_URI needs PUREBOOT_LDAP_USER_SEARCH_BASE and "
            "PUREBOOT_LDAP_GROUP_SEARCH_BASE"
        )
    _ldap_filter = os.environ.get("PUREBOOT_LDAP_USER_FILTER", "").strip() or "(uid=%(user)s)"
    if "%(user)s" not in _ldap_filter:
        raise ImproperlyConfigured("PUREBOOT_LDAP_USER_FILTER must contain %(user)s")
    _ldap_group_type = os.environ.get("PUREBOOT_LDAP_GROUP_TYPE", "").strip() or "groupOfNames"
    if _ldap_group_type not in _LDAP_GROUP_TYPES:
        raise ImproperlyConfigured(
            f"PUREBOOT_LDAP_GROUP_TYPE must be one of {', '.join(_LDAP_GROUP_TYPES)}"
        )
    AUTH_LDAP_SERVER_URI = PUREBOOT_LDAP_SERVER_URI
    AUTH_LDAP_BIND_DN = os.environ.get("PUREBOOT_LDAP_BIND_DN", "").strip()
    AUTH_LDAP_BIND_PASSWORD = os.environ.get("PUREBOOT_LDAP_BIND_PASSWORD", "")
    AUTH_LDAP_USER_SEARCH = ldap_config.LDAPSearch(
        _ldap_user_base, ldap.SCOPE_SUBTREE, _ldap_filter
    )
    AUTH_LDAP_GROUP_SEARCH = ldap_config.LDAPSearch(
        _ldap_group_base, ldap.SCOPE_SUBTREE, _LDAP_GROUP_TYPES[_ldap_group_type][1]
    )
    AUTH_LDAP_GROUP_TYPE = _LDAP_GROUP_TYPES[_ldap_group_type][0]()
    AUTH_LDAP_REQUIRE_GROUP = os.environ.get("PUREBOOT_LDAP_REQUIRE_GROUP", "").strip() or None
    AUTH_LDAP_START_TLS = _env_bool("PUREBOOT_LDAP_START_TLS", False)
    AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    AUTH_LDAP_ALWAYS_UPDATE_USER = True
    _ldap_timeout = _env_int("PUREBOOT_LDAP_TIMEOUT", 5, 1)
    AUTH_LDAP_CONNECTION_OPTIONS = {
        ldap.OPT_NETWORK_TIMEOUT: _ldap_timeout,
        ldap.OPT_TIMEOUT: _ldap_timeout,
        # Active Directory answers searches with referrals libldap cannot follow.
        ldap.OPT_REFERRALS: 0,
    }
    _ldap_ca_file = os.environ.get("PUREBOOT_LDAP_CA_FILE", "").strip()
    if _ldap_ca_file:
        if not os.path.isfile(_ldap_ca_file):
            raise ImproperlyConfigured(f"PUREBOOT_LDAP_CA_FILE: no such file {_ldap_ca_file}")
        AUTH_LDAP_CONNECTION_OPTIONS[ldap.OPT_X_TLS_CACERTFILE] = _ldap_ca_file
        AUTH_LDAP_CONNECTION_OPTIONS[ldap.OPT_X_TLS_REQUIRE_CERT] = ldap.OPT_X_TLS_DEMAND
        # Last: makes libldap build a TLS context with the options above.
        AUTH_LDAP_CONNECTION_OPTIONS[ldap.OPT_X_TLS_NEWCTX] = 0
    # After ModelBackend: local accounts (the break-glass admin) sign in even while
    # the directory is down; before guardian, which only answers permissions.
    AUTHENTICATION_BACKENDS.insert(
        AUTHENTICATION_BACKENDS.index("guardian.backends.ObjectPermissionBackend"),
        "accounts.ldap_backend.PureBootLDAPBackend",
    )

# --- directory sign-in: OpenID Connect (mozilla-django-oidc) -----------------
# On only when PUREBOOT_OIDC_CLIENT_ID is set. Endpoints come from the
# issuer's discovery document (fetched at the first sign-in, not at start-up,
# kept an hour); PUREBOOT_OIDC_*_ENDPOINT variables override single ones, and
# with all four no discovery happens. The client secret is never logged.
PUREBOOT_OIDC_CLIENT_ID = os.environ.get("PUREBOOT_OIDC_CLIENT_ID", "").strip()
PUREBOOT_OIDC_ENABLED = bool(PUREBOOT_OIDC_CLIENT_ID)
PUREBOOT_OIDC_ISSUER = os.environ.get("PUREBOOT_OIDC_ISSUER", "").strip().rstrip("/")
PUREBOOT_OIDC_ENDPOINTS = {
    key: os.environ.get(f"PUREBOOT_OIDC_{key.upper()}_ENDPOINT", "").strip()
    for key in ("authorization", "token", "userinfo", "jwks")
}
PUREBOOT_OIDC_GROUPS_CLAIM = os.environ.get("PUREBOOT_OIDC_GROUPS_CLAIM", "").strip() or "groups"
PUREBOOT_OIDC_ROLE_GROUPS = rolemap.parse_role_map(
    "PUREBOOT_OIDC_ROLE_GROUPS", os.environ.get("PUREBOOT_OIDC_ROLE_GROUPS", ""), fold_case=False
)
PUREBOOT_OIDC_REQUIRE_GROUP = os.environ.get("PUREBOOT_OIDC_REQUIRE_GROUP", "").strip()
# The bounds of every request to the provider (seconds).
OIDC_TIMEOUT = _env_int("PUREBOOT_OIDC_TIMEOUT", 10, 1)
OIDC_RP_CLIENT_ID = PUREBOOT_OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = os.environ.get("PUREBOOT_OIDC_CLIENT_SECRET", "")
OIDC_RP_SCOPES = os.environ.get("PUREBOOT_OIDC_SCOPES", "").strip() or "openid email profile"
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_AUTHENTICATE_CLASS = "accounts.oidc.AuthenticateView"
OIDC_CALLBACK_CLASS = "accounts.oidc.CallbackView"
LOGIN_REDIRECT_URL = "/admin/"
LOGIN_REDIRECT_URL_FAILURE = "/admin/login/?sso=failed"
if PUREBOOT_OIDC_ENABLED:
    if not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured("PUREBOOT_OIDC_CLIENT_ID needs PUREBOOT_OIDC_CLIENT_SECRET")
    if not PUREBOOT_OIDC_ISSUER.startswith(("https://", "http://")):
        # Also without discovery: ID tokens must name this issuer.
        raise ImproperlyConfigured("PUREBOOT_OIDC_CLIENT_ID needs PUREBOOT_OIDC_ISSUER (a URL)")
    if "openid" not in OIDC_RP_SCOPES.split():
        raise ImproperlyConfigured("PUREBOOT_OIDC_SCOPES must include openid")
    AUTHENTICATION_BACKENDS.insert(
        AUTHENTICATION_BACKENDS.index("guardian.backends.ObjectPermissionBackend"),
        "accounts.oidc.PureBootOIDCBackend",
    )

# --- directory sign-in: SAML 2.0 (pysaml2, which runs the xmlsec1 binary) -----
# On only when PUREBOOT_SAML_IDP_METADATA_FILE or _URL is set. PureBoot is the
# service provider; the identity provider's metadata (its entity id, sign-in
# URL and signing certificate) comes from the file, or from the URL (fetched at
# the first sign-in, kept an hour). The SP key signs our requests and decrypts
# encrypted assertions; it is read by xmlsec1 and never logged.
PUREBOOT_SAML_IDP_METADATA_FILE = os.environ.get("PUREBOOT_SAML_IDP_METADATA_FILE", "").strip()
PUREBOOT_SAML_IDP_METADATA_URL = os.environ.get("PUREBOOT_SAML_IDP_METADATA_URL", "").strip()
PUREBOOT_SAML_ENABLED = bool(PUREBOOT_SAML_IDP_METADATA_FILE or PUREBOOT_SAML_IDP_METADATA_URL)
PUREBOOT_SAML_SP_ENTITY_ID = os.environ.get("PUREBOOT_SAML_SP_ENTITY_ID", "").strip()
# Where browsers reach PureBoot: the assertion consumer service is
# <base>/saml/acs/ (never taken from a request's Host header).
PUREBOOT_SAML_SP_BASE_URL = os.environ.get("PUREBOOT_SAML_SP_BASE_URL", "").strip().rstrip("/")
PUREBOOT_SAML_SP_KEY_FILE = os.environ.get("PUREBOOT_SAML_SP_KEY_FILE", "").strip()
PUREBOOT_SAML_SP_CERT_FILE = os.environ.get("PUREBOOT_SAML_SP_CERT_FILE", "").strip()
PUREBOOT_SAML_USERNAME_ATTRIBUTE = (
    os.environ.get("PUREBOOT_SAML_USERNAME_ATTRIBUTE", "").strip() or "uid"
)
PUREBOOT_SAML_EMAIL_ATTRIBUTE = (
    os.environ.get("PUREBOOT_SAML_EMAIL_ATTRIBUTE", "").strip() or "mail"
)
PUREBOOT_SAML_GROUPS_ATTRIBUTE = (
    os.environ.get("PUREBOOT_SAML_GROUPS_ATTRIBUTE", "").strip() or "groups"
)
PUREBOOT_SAML_ROLE_GROUPS = rolemap.parse_role_map(
    "PUREBOOT_SAML_ROLE_GROUPS", os.environ.get("PUREBOOT_SAML_ROLE_GROUPS", ""), fold_case=False
)
# Responses the identity provider sends without our request (IdP-initiated).
PUREBOOT_SAML_ALLOW_UNSOLICITED = _env_bool("PUREBOOT_SAML_ALLOW_UNSOLICITED", False)
PUREBOOT_SAML_CLOCK_SKEW_SECONDS = _env_int("PUREBOOT_SAML_CLOCK_SKEW_SECONDS", 60, 0)
PUREBOOT_SAML_XMLSEC_BINARY = os.environ.get("PUREBOOT_SAML_XMLSEC_BINARY", "").strip() or (
    shutil.which("xmlsec1") or ""
)
if PUREBOOT_SAML_ENABLED:
    if PUREBOOT_SAML_IDP_METADATA_FILE and PUREBOOT_SAML_IDP_METADATA_URL:
        raise ImproperlyConfigured(
            "set one of PUREBOOT_SAML_IDP_METADATA_FILE and PUREBOOT_SAML_IDP_METADATA_URL"
        )
    if PUREBOOT_SAML_IDP_METADATA_FILE and not os.path.isfile(PUREBOOT_SAML_IDP_METADATA_FILE):
        raise ImproperlyConfigured(
            f"PUREBOOT_SAML_IDP_METADATA_FILE: no such file {PUREBOOT_SAML_IDP_METADATA_FILE}"
        )
    if PUREBOOT_SAML_IDP_METADATA_URL and not PUREBOOT_SAML_IDP_METADATA_URL.startswith("https://"):
        # The metadata carries the certificate every assertion is checked against.
        raise ImproperlyConfigured("PUREBOOT_SAML_IDP_METADATA_URL must be an https:// URL")
    if not PUREBOOT_SAML_SP_ENTITY_ID:
        raise ImproperlyConfigured("SAML sign-in needs PUREBOOT_SAML_SP_ENTITY_ID")
    if not re.match(r"^https?://[^/\s]+(/\S*)?\Z", PUREBOOT_SAML_SP_BASE_URL):
        raise ImproperlyConfigured(
            "SAML sign-in needs PUREBOOT_SAML_SP_BASE_URL, the http(s):// URL browsers reach "
            "PureBoot at"
        )
    for _name in ("PUREBOOT_SAML_SP_KEY_FILE", "PUREBOOT_SAML_SP_CERT_FILE"):
        _value = globals()[_name]
        if not _value or not os.path.isfile(_value):
            raise ImproperlyConfigured(f"SAML sign-in needs {_name}, an existing PEM file")
    if PUREBOOT_SAML_CLOCK_SKEW_SECONDS > 300:
        raise ImproperlyConfigured("PUREBOOT_SAML_CLOCK_SKEW_SECONDS must be at most 300")
    if not PUREBOOT_SAML_XMLSEC_BINARY or not os.access(PUREBOOT_SAML_XMLSEC_BINARY, os.X_OK):
        raise ImproperlyConfigured(
            "SAML sign-in needs the xmlsec1 program (Debian package xmlsec1), or "
            "PUREBOOT_SAML_XMLSEC_BINARY naming it"
        )
    AUTHENTICATION_BACKENDS.insert(
        AUTHENTICATION_BACKENDS.index("guardian.backends.ObjectPermissionBackend"),
        "accounts.saml.PureBootSAMLBackend",
    )
# --- configuration management (configmgmt) -------------------------------------
_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _env_url(name: str) -> str:
    """An http(s) URL without a trailing slash, or empty (the integration is off)."""
    value = os.environ.get(name, "").strip().rstrip("/")
    if value and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value


def _env_credential(name: str, needed_by: str) -> str:
    """The name of a stored credential; required when ``needed_by`` is set."""
    value = os.environ.get(name, "").strip()
    if value and not _CREDENTIAL_NAME.match(value):
        raise ImproperlyConfigured(f"{name} must be a credential name, got {value!r}")
    if needed_by and not value:
        raise ImproperlyConfigured(f"{name} is needed when {needed_by} is set")
    return value


# Playbooks that workflows' config_run steps may name live under this folder.
PUREBOOT_ANSIBLE_PLAYBOOK_DIR = Path(
    os.environ.get("PUREBOOT_ANSIBLE_PLAYBOOK_DIR", VAR_DIR / "ansible")
).resolve()
# Salt minion keys follow the lifecycle through salt-api (rest_cherrypy).
PUREBOOT_SALT_API_URL = _env_url("PUREBOOT_SALT_API_URL")
PUREBOOT_SALT_API_CREDENTIAL = _env_credential(
    "PUREBOOT_SALT_API_CREDENTIAL", "PUREBOOT_SALT_API_URL" if PUREBOOT_SALT_API_URL else ""
)
PUREBOOT_SALT_API_EAUTH = os.environ.get("PUREBOOT_SALT_API_EAUTH", "").strip() or "pam"
if not re.match(r"^[a-z][a-z0-9_]{0,31}$", PUREBOOT_SALT_API_EAUTH):
    raise ImproperlyConfigured("PUREBOOT_SALT_API_EAUTH must be a Salt eauth module name")
# Chef Infra Server: installed nodes get a node and a client, retired ones lose them.
PUREBOOT_CHEF_SERVER_URL = _env_url("PUREBOOT_CHEF_SERVER_URL")
PUREBOOT_CHEF_ORG = os.environ.get("PUREBOOT_CHEF_ORG", "").strip()
if PUREBOOT_CHEF_SERVER_URL and not re.match(r"^[a-z0-9][a-z0-9_-]{0,254}$", PUREBOOT_CHEF_ORG):
    raise ImproperlyConfigured(
        "PUREBOOT_CHEF_ORG must be the Chef organisation's short name when "
        "PUREBOOT_CHEF_SERVER_URL is set"
    )
PUREBOOT_CHEF_CREDENTIAL = _env_credential(
    "PUREBOOT_CHEF_CREDENTIAL", "PUREBOOT_CHEF_SERVER_URL" if PUREBOOT_CHEF_SERVER_URL else ""
)
# A CA bundle for salt-api and the Chef server (empty: the system's CAs).
PUREBOOT_CONFIGMGMT_CA_FILE = os.environ.get("PUREBOOT_CONFIGMGMT_CA_FILE", "").strip()
if PUREBOOT_CONFIGMGMT_CA_FILE and not Path(PUREBOOT_CONFIGMGMT_CA_FILE).is_file():
    raise ImproperlyConfigured(
        f"PUREBOOT_CONFIGMGMT_CA_FILE names {PUREBOOT_CONFIGMGMT_CA_FILE}, which is not a file"
    )
