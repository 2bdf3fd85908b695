"""PureBoot settings: one module, fed by environment variables.

Every variable read here is documented in README.md ("Configuration").
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pureboot import fernet_keys

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
    "nodes",
    "workflows",
    "hypervisors",
    "approvals",
    "bootserve",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Failed sign-ins: lockout answers (django-axes); keep it last.
    "axes.middleware.AxesMiddleware",
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
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses sign-ins for a locked-out username or address.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
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
        "rest_framework_simplejwt.authentication.JWTAuthentication",
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
    },
    "EXCEPTION_HANDLER": "pureboot.api.exceptions.exception_handler",
    "NON_FIELD_ERRORS_KEY": "non_field_errors",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=_env_int("PUREBOOT_JWT_ACCESS_MINUTES", 15, 1)),
    "REFRESH_TOKEN_LIFETIME": timedelta(hours=_env_int("PUREBOOT_JWT_REFRESH_HOURS", 24, 1)),
    "UPDATE_LAST_LOGIN": True,
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
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "pureboot",
    }
}

# --- Celery ---------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
CELERY_DIR = VAR_DIR / "celery"
CELERY_DIR.mkdir(exist_ok=True)  # beat's schedule file lives here in every mode
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
else:
    # Embedded default: tasks queued by the web process run in-process
    # (eager); `make run` also starts a worker with embedded beat on kombu's
    # filesystem transport under var/celery so periodic tasks still fire.
    for sub in ("out", "processed"):
        (CELERY_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_DIR / "out"),
        "data_folder_out": str(CELERY_DIR / "out"),
        "processed_folder": str(CELERY_DIR / "processed"),
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
PUREBOOT_BOOT_POLL_SECONDS = _env_int("PUREBOOT_BOOT_POLL_SECONDS", 10, 1)
PUREBOOT_BOOT_WAIT_SECONDS = _env_int("PUREBOOT_BOOT_WAIT_SECONDS", 600, 1)
PUREBOOT_MAX_INSTALL_ATTEMPTS = _env_int("PUREBOOT_MAX_INSTALL_ATTEMPTS", 3, 1)
# A boot request refreshes a node's last_seen_at when it is older than this
# (0: every request); a boot storm then writes once per node and window.
PUREBOOT_LAST_SEEN_SECONDS = _env_int("PUREBOOT_LAST_SEEN_SECONDS", 60, 0)
# The TFTP daemon (manage.py bootserve): where it listens.
PUREBOOT_TFTP_ADDRESS = os.environ.get("PUREBOOT_TFTP_ADDRESS", "0.0.0.0").strip()
PUREBOOT_TFTP_PORT = _env_int("PUREBOOT_TFTP_PORT", 69, 1)
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
# Keys that encrypt credentials at rest (first encrypts, all decrypt):
# PUREBOOT_FERNET_KEYS, or a key file generated once into var/ (mode 600).
PUREBOOT_FERNET_KEYS, PUREBOOT_FERNET_KEYS_SOURCE = fernet_keys.load_keys(VAR_DIR)
# How often the periodic stuck-install check runs.
PUREBOOT_INSTALL_CHECK_SECONDS = _env_int("PUREBOOT_INSTALL_CHECK_SECONDS", 60, 5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("PUREBOOT_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

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

# The approval pages send people to the admin's sign-in page.
LOGIN_URL = "/admin/login/"

# --- sign-in rate limiting (django-axes) ------------------------------------
# After PUREBOOT_LOGIN_FAILURE_LIMIT failed sign-ins for one username, or from
# one address, that username or address is locked out for
# PUREBOOT_LOGIN_LOCKOUT_MINUTES (admin, approval pages and /api/v1/auth/token
# alike). Lockouts are audit events.
AXES_FAILURE_LIMIT = _env_int("PUREBOOT_LOGIN_FAILURE_LIMIT", 5, 1)
AXES_COOLOFF_TIME = timedelta(minutes=_env_int("PUREBOOT_LOGIN_LOCKOUT_MINUTES", 15, 1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
