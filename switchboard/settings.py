"""Switchboard settings: one module, read from the environment.

`SWITCHBOARD_ENV` selects the defaults: `production` (the default) has no default for any
secret and fails fast; `development` (make demo) and `test` (make test) get safe local
defaults. Every secret can also be given as `<NAME>_FILE`, the path of a mounted file.
"""

import atexit
import os
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SWITCHBOARD_ENV = env.str("SWITCHBOARD_ENV", default="production")
if SWITCHBOARD_ENV not in {"production", "development", "test"}:
    raise ImproperlyConfigured(
        f"SWITCHBOARD_ENV must be production, development or test, not {SWITCHBOARD_ENV!r}"
    )
IS_PRODUCTION = SWITCHBOARD_ENV == "production"
LOCAL_VAR_DIR = Path(env.str("SWITCHBOARD_VAR_DIR", default=str(BASE_DIR / "var")))


def _secret(name: str, local_default: str) -> str:
    """Read a secret from NAME or the file named by NAME_FILE; production has no default."""
    file_path = env.str(f"{name}_FILE", default="")
    if file_path:
        return Path(file_path).read_text(encoding="utf-8").strip()
    value = env.str(name, default="")
    if value:
        return value
    if IS_PRODUCTION:
        raise ImproperlyConfigured(
            f"{name} (or {name}_FILE) must be set in production. For a local run set "
            "SWITCHBOARD_ENV=development (make demo) or SWITCHBOARD_ENV=test (make test)."
        )
    return local_default


SECRET_KEY = _secret("SECRET_KEY", "dev-only-insecure-secret-key-" + SWITCHBOARD_ENV)
# Pepper for API-key and management-token HMACs; separate from SECRET_KEY so that rotating
# Django's session key does not invalidate every issued key.
API_KEY_HMAC_SECRET = _secret("API_KEY_HMAC_SECRET", "dev-only-insecure-api-key-pepper")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "tenants",
    "keyvault",
    "gateway",
    "budgets",
    "analytics",
    "admin_console",
]

MIDDLEWARE = [
    "switchboard.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "switchboard.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "switchboard.urls"
ASGI_APPLICATION = "switchboard.asgi.application"
WSGI_APPLICATION = "switchboard.wsgi.application"

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

# --- Data stores -----------------------------------------------------------------------------
_LOCAL_DATABASE_URL = {
    "development": f"sqlite:///{LOCAL_VAR_DIR / 'switchboard.sqlite3'}",
    "test": "postgres://postgres@127.0.0.1:5432/switchboard",
}
if IS_PRODUCTION:
    DATABASES = {"default": env.db_url_config(_secret("DATABASE_URL", ""))}
else:
    DATABASES = {
        "default": env.db_url("DATABASE_URL", default=_LOCAL_DATABASE_URL[SWITCHBOARD_ENV])
    }
# Never ATOMIC_REQUESTS: a streamed gateway call must not hold a transaction open.
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=0))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = (
    _secret("REDIS_URL", "")
    if IS_PRODUCTION
    else env.str(
        "REDIS_URL",
        default="redis://127.0.0.1:6379/15"
        if SWITCHBOARD_ENV == "test"
        else "redis://127.0.0.1:6379/0",
    )
)

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
# Countdowns and ETAs must stay below this, or Redis redelivers the task while it waits.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Auth ---------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if SWITCHBOARD_ENV == "test":
    # Password hashing strength is not under test; a fast hasher keeps the suite quick.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "console:login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=IS_PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)

# --- Internationalisation and time --------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = LOCAL_VAR_DIR / "static"
# Built reports (large exports, statements); shared storage when workers are on many hosts.
EXPORT_DIR = Path(env.str("EXPORT_DIR", default=str(LOCAL_VAR_DIR / "exports")))
EXPORT_RETENTION_DAYS = env.int("EXPORT_RETENTION_DAYS", default=14)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
# whitenoise hands Django a synchronous file iterator; under ASGI that is correct, only slower,
# and static files are small and cached by browsers.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous")
if not IS_PRODUCTION:
    # Local runs serve static files through the finders; whitenoise still expects the root.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# --- Email --------------------------------------------------------------------------------
_email = env.email_url(
    "EMAIL_URL", default="smtp://127.0.0.1:1025" if IS_PRODUCTION else "consolemail://"
)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST", "")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="switchboard@localhost")
# Where links in emails point (the console's public address).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.ManagementTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "switchboard.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "switchboard.api.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard management API",
    "DESCRIPTION": "Tenants, teams, members, API keys and the rest of Switchboard's control plane.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The schema and its UI are for signed-in users only, served from local assets.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "UserTierEnum": "tenants.models.USER_TIER_CHOICES",
        "RoleEnum": "tenants.roles.ROLE_CHOICES",
        "ExperimentStatusEnum": "gateway.models.ExperimentStatus",
        "TenantStatusEnum": "tenants.models.TenantStatus",
    },
}

# --- Logging: structured lines on stdout, secrets scrubbed --------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# One JSON object per line in production (for log pipelines); readable lines elsewhere.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if IS_PRODUCTION else "plain")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or plain.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "switchboard.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "switchboard.logging.JsonFormatter"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "LiteLLM": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # The Azure SDK logs every request line and header name at INFO.
        "azure": {"level": "WARNING"},
        "botocore": {"level": "WARNING"},
        "hvac": {"level": "WARNING"},
    },
}

# --- Switchboard ----------------------------------------------------------------------------
# Upstream hosts (names, IPs or CIDRs) that deployments may reach even though they resolve to
# private, loopback or link-local addresses. Production allows none unless listed.
ALLOWED_UPSTREAM_HOSTS = env.list(
    "ALLOWED_UPSTREAM_HOSTS",
    default=[] if IS_PRODUCTION else ["127.0.0.1", "localhost", "::1"],
)
# Provider secrets: cached per process, served stale up to a hard age if the vault is down.
KEYVAULT_CACHE_TTL_S = env.float("KEYVAULT_CACHE_TTL_S", default=600.0)
KEYVAULT_MAX_STALE_S = env.float("KEYVAULT_MAX_STALE_S", default=3600.0)
# While serving a stale value, ask the vault again at most this often.
KEYVAULT_STALE_RETRY_S = env.float("KEYVAULT_STALE_RETRY_S", default=5.0)
# The env backend (and api_key_env on deployments) reads the web process's environment:
# convenient in development, refused in production unless explicitly allowed.
KEYVAULT_ALLOW_ENV_BACKEND = env.bool("KEYVAULT_ALLOW_ENV_BACKEND", default=not IS_PRODUCTION)
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=4 * 1024 * 1024)
# Overall deadline for one gateway call, across retries and fallbacks.
GATEWAY_DEADLINE_S = env.float("GATEWAY_DEADLINE_S", default=120.0)
# How often a process checks the config version in Redis (the staleness bound).
GATEWAY_SNAPSHOT_CHECK_S = env.float("GATEWAY_SNAPSHOT_CHECK_S", default=0.5)
# Retries per deployment before falling back, and the circuit breaker shared through Redis.
GATEWAY_ATTEMPTS_PER_DEPLOYMENT = env.int("GATEWAY_ATTEMPTS_PER_DEPLOYMENT", default=2)
GATEWAY_BREAKER_WINDOW_S = env.float("GATEWAY_BREAKER_WINDOW_S", default=30.0)
GATEWAY_BREAKER_MIN_REQUESTS = env.int("GATEWAY_BREAKER_MIN_REQUESTS", default=5)
GATEWAY_BREAKER_FAILURE_RATIO = env.float("GATEWAY_BREAKER_FAILURE_RATIO", default=0.5)
GATEWAY_BREAKER_OPEN_S = env.float("GATEWAY_BREAKER_OPEN_S", default=15.0)
# Hard cap on any list endpoint's page size.
API_MAX_PAGE_SIZE = 500
# Audit rows keep this many days; a periodic task (analytics issue) prunes older ones.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=400)

# --- Metrics --------------------------------------------------------------------------------


def _prometheus_multiproc_dir() -> str:
    """Where every web worker writes its metrics files, so that /metrics, whichever worker
    answers, merges all of them (see switchboard/metrics.py). prometheus_client reads the
    variable once, when first imported; settings load before that, so the default set here
    applies to this process and the workers it starts. Production keeps what it is given
    (unset: each process reports only its own numbers, right for a single worker)."""
    configured = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
    if configured or IS_PRODUCTION:
        return configured
    if SWITCHBOARD_ENV == "development":
        return str(LOCAL_VAR_DIR / "prometheus")
    # A test session gets its own directory, removed when the process that chose it ends.
    # switchboard/metrics.py creates it on first import, so tools that only load settings
    # (mypy's Django plugin) leave nothing behind.
    path = Path(tempfile.gettempdir()) / f"switchboard-metrics-{secrets.token_hex(8)}"
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return str(path)


PROMETHEUS_MULTIPROC_DIR = _prometheus_multiproc_dir()
if PROMETHEUS_MULTIPROC_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
# Bearer token for /metrics. Unset: only loopback and private addresses may scrape it.
_metrics_token_file = env.str("METRICS_TOKEN_FILE", default="")
METRICS_TOKEN = (
    Path(_metrics_token_file).read_text(encoding="utf-8").strip()
    if _metrics_token_file
    else env.str("METRICS_TOKEN", default="")
)
