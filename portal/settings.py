"""Lantern settings: every value comes from the environment, with defaults for a laptop.

A fresh machine needs nothing: SQLite in ``var/`` and tasks run in process. Production sets
``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis), ``SECRET_KEY`` and
``LANTERN_ENCRYPTION_KEY``.
"""

from pathlib import Path

import dj_database_url

from portal.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("LANTERN_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
# The embedded key is for laptops and tests only; production sets SECRET_KEY.
SECRET_KEY = env_str("SECRET_KEY", "lantern-insecure-development-key-change-me-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "portal",
    "portal.bitbucket_login",
    "catalog",
    "integrations",
    "scorecards",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.api.NulCharacterGuardMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
                "portal.context_processors.layout",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'lantern.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ALLOW_REGISTRATION = env_bool("LANTERN_ALLOW_SIGNUP", False)
ACCOUNT_ADAPTER = "portal.adapters.AccountAdapter"
# Sign in with Bitbucket (portal.bitbucket_login): on when both OAuth consumer values are set.
# New users get an account only when sign-up is open (LANTERN_ALLOW_SIGNUP).
BITBUCKET_OAUTH_URL = env_str("BITBUCKET_OAUTH_URL", "https://bitbucket.org")
BITBUCKET_API_URL = env_str("BITBUCKET_API_URL", "https://api.bitbucket.org/2.0")
BITBUCKET_OAUTH_CLIENT_ID = env_str("BITBUCKET_OAUTH_CLIENT_ID", "")
BITBUCKET_OAUTH_CLIENT_SECRET = env_str("BITBUCKET_OAUTH_CLIENT_SECRET", "")
SOCIALACCOUNT_PROVIDERS: dict = {}
if BITBUCKET_OAUTH_CLIENT_ID and BITBUCKET_OAUTH_CLIENT_SECRET:
    SOCIALACCOUNT_PROVIDERS["bitbucket_oauth2"] = {
        "APPS": [{"client_id": BITBUCKET_OAUTH_CLIENT_ID, "secret": BITBUCKET_OAUTH_CLIENT_SECRET}]
    }
SOCIALACCOUNT_LOGIN_ON_GET = False  # the provider login URL takes a POST (CSRF-protected)
SOCIALACCOUNT_QUERY_EMAIL = True  # read the primary address from /2.0/user/emails ("email" scope)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The largest request body read into memory (Django's default, 2.5 MiB, made visible): an API body
# over it is a 413 InputError.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("LANTERN_MAX_REQUEST_BYTES", 2_621_440)

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "EXCEPTION_HANDLER": "portal.api.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["portal.renderers.JSONRenderer"],
    # DRF's JSON parser with nesting and NUL characters bounded (portal.parsers).
    "DEFAULT_PARSER_CLASSES": ["portal.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lantern API",
    "DESCRIPTION": "Backstage-compatible software catalog and Bitbucket integrations.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page loads Swagger UI from Lantern's own static files: it works with no
    # internet, and the browser is never sent to a CDN. (No ReDoc page: its page loads web
    # fonts and a logo from the internet.)
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Choice sets of fields that share a name ("status") across apps get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "CheckStatusEnum": "scorecards.models.CheckStatus",
        "MetricStatusEnum": "scorecards.models.MetricStatus",
    },
}

# Exact counts and facet counts over the catalog are cached in process until the catalog next
# changes (PostgreSQL only); this bounds the life of an answer computed during a write.
LANTERN_CATALOG_CACHE_SECONDS = env_int("LANTERN_CATALOG_CACHE_SECONDS", 30)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "catalog": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "catalog",
        "OPTIONS": {"MAX_ENTRIES": 2000},
    },
}
# Catalog: reading the API needs an authenticated user unless this is on.
LANTERN_CATALOG_ANONYMOUS_READ = env_bool("LANTERN_CATALOG_ANONYMOUS_READ", False)
LANTERN_PUBLIC_URL = env_str("LANTERN_PUBLIC_URL", "http://127.0.0.1:8000")
# Registered locations (the catalog's locations API): how often each is read again; what becomes
# of the entities of a deleted location ("keep": orphaned, as Backstage's default, or
# "delete"); the most entity documents one catalog file may hold; the folders a ``file``
# location may point into (none: file locations are refused).
LANTERN_LOCATION_REFRESH_SECONDS = env_int("LANTERN_LOCATION_REFRESH_SECONDS", 1800)
LANTERN_LOCATION_ORPHAN_STRATEGY = env_str("LANTERN_LOCATION_ORPHAN_STRATEGY", "keep")
LANTERN_LOCATION_MAX_DOCUMENTS = env_int("LANTERN_LOCATION_MAX_DOCUMENTS", 1000)
LANTERN_LOCATION_FILE_ROOTS = env_list("LANTERN_LOCATION_FILE_ROOTS", [])
# Register each enabled integration's webhook on the provider (and remove it on suspend/delete).
LANTERN_WEBHOOKS_AUTO_REGISTER = env_bool("LANTERN_WEBHOOKS_AUTO_REGISTER", True)
LANTERN_ENCRYPTION_KEY = env_str("LANTERN_ENCRYPTION_KEY", "")
BITBUCKET_DC_ENABLED = env_bool("BITBUCKET_DC_ENABLED", False)
LANTERN_OUTBOUND_ALLOWLIST = env_list("LANTERN_OUTBOUND_ALLOWLIST", [])
# Dotted paths of extra provider classes to register (tests, plug-ins).
LANTERN_EXTRA_PROVIDERS = env_list("LANTERN_EXTRA_PROVIDERS", [])
# Seconds a sync's claim on its integration lasts without a heartbeat: a killed worker's run is
# closed as abandoned and the integration freed this long after its last sign of life.
LANTERN_SYNC_LOCK_TTL = env_int("LANTERN_SYNC_LOCK_TTL", 600)
# Write-back on Data Center: repositories larger than this (MiB, by REST's size) are fetched and
# pushed with the git CLI rather than dulwich; clones are kept under LANTERN_GIT_CACHE_DIR (empty:
# a folder in the system's temp dir) for reuse within LANTERN_GIT_CACHE_SECONDS, at most
# LANTERN_GIT_CACHE_MAX_MB in all (least recently used evicted first).
LANTERN_GIT_FALLBACK_THRESHOLD_MB = env_int("LANTERN_GIT_FALLBACK_THRESHOLD_MB", 50)
LANTERN_GIT_CACHE_DIR = env_str("LANTERN_GIT_CACHE_DIR", "")
LANTERN_GIT_CACHE_SECONDS = env_int("LANTERN_GIT_CACHE_SECONDS", 300)
LANTERN_GIT_CACHE_MAX_MB = env_int("LANTERN_GIT_CACHE_MAX_MB", 1024)

# Celery: Redis when a broker is configured, otherwise tasks run in process.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
# Request budgets per credential, shared by every process and host: a redis:// URL, or
# "database" (PostgreSQL/SQLite table); by default the Redis broker when there is one.
LANTERN_REQUEST_BUDGET_STORE = env_str("LANTERN_REQUEST_BUDGET_STORE", "") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "database"
)
LANTERN_REQUEST_BUDGET_PREFIX = env_str("LANTERN_REQUEST_BUDGET_PREFIX", "lantern:budget")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-integrations": {
        "task": "integrations.enqueue_due_integrations",
        "schedule": 60.0,
    },
    "refresh-due-locations": {
        "task": "catalog.refresh_due_locations",
        "schedule": 60.0,
    },
}

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "plain")  # plain | json
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "portal.logging.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "portal.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # One line per outbound request is noise; Lantern logs its own retries and failures.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
