"""Walkout settings, in two profiles chosen by the environment (DESIGN.md "Profiles").

``WALKOUT_PROFILE=embedded`` (the default, ``make demo``): SQLite, ``InMemoryChannelLayer``, Celery tasks run
in-process (``task_always_eager``), the dummy payment provider.

``WALKOUT_PROFILE=production``: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (Celery broker and
``channels_redis``), ``MQTT_URL`` (shelf controllers), ``STRIPE_SECRET_KEY`` / ``STRIPE_WEBHOOK_SECRET``, and
``DJANGO_SECRET_KEY``. Secrets come only from the environment; production refuses to start without them.
"""
from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded profile keeps its files (SQLite, media, raw samples, clips, mail, recordings). Under pytest-xdist
# each test worker process (PYTEST_XDIST_WORKER, set by xdist) gets a folder of its own, so tests running at once never
# write the same file.
VAR_DIR = BASE_DIR / "var" / (f"test-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER")
                              else "")
PROFILE = os.environ.get("WALKOUT_PROFILE", "embedded").strip().lower()
if PROFILE not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"WALKOUT_PROFILE must be 'embedded' or 'production', not {PROFILE!r}")
PRODUCTION = PROFILE == "production"


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ImproperlyConfigured(f"the production profile needs the environment variable {name}")
    return value


#: the shortest production secret key accepted, and its fewest distinct characters: Django's own check
#: (``security.W009``, ``manage.py check --deploy``) warns below these, and for a key Django generated for development
#: (its ``django-insecure-`` prefix); production refuses to start instead
SECRET_KEY_MIN_LENGTH, SECRET_KEY_MIN_UNIQUE = 50, 5


def _secret_key(value: str, name: str = "DJANGO_SECRET_KEY") -> str:
    """``value`` (the environment variable ``name``'s) if it is long and varied enough to sign sessions and QR passes;
    raises ImproperlyConfigured otherwise (saying how to make one)."""
    if len(value) < SECRET_KEY_MIN_LENGTH or len(set(value)) < SECRET_KEY_MIN_UNIQUE or \
            value.startswith("django-insecure-"):
        raise ImproperlyConfigured(
            f"{name} is too weak for production ({len(value)} characters, {len(set(value))} distinct"
            f"{', a development key' if value.startswith('django-insecure-') else ''}): use "
            f"at least {SECRET_KEY_MIN_LENGTH} random characters, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'")
    return value


if PRODUCTION:
    SECRET_KEY = _secret_key(_env("DJANGO_SECRET_KEY"))
    DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
    ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
else:
    # Embedded profile only: a per-checkout development key, never used in production.
    SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "walkout-embedded-development-key-not-for-production")
    # Off by default in every profile: a visitor never sees Django's debug pages (DJANGO_DEBUG=1 for development).
    DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
# old keys while rotating: a value signed with one is still accepted, so in production each is held to the key's rule
# (comma-separated; spaces around an entry are not part of it: "old1, old2" names two keys)
SECRET_KEY_FALLBACKS = [_secret_key(k, "DJANGO_SECRET_KEY_FALLBACKS") if PRODUCTION else k
                        for k in (k.strip() for k in os.environ.get("DJANGO_SECRET_KEY_FALLBACKS", "").split(","))
                        if k]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "store.apps.WalkoutConfig",  # the project: loads the Celery app (store/apps.py)
    "store.layout",
    "store.inventory",
    "store.accounts",
    "store.gates",
    "store.billing",
    "sensors",
    "vision",
    "carts",
    "axes",  # login throttling (store/accounts/lockout.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out login with store.accounts.lockout.lockout_response
]

ROOT_URLCONF = "store.urls"
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
WSGI_APPLICATION = None
ASGI_APPLICATION = "store.asgi.application"

if PRODUCTION:
    import dj_database_url

    try:
        DATABASES = {"default": dj_database_url.parse(_env("DATABASE_URL"), conn_max_age=60)}
    except ValueError as exc:  # dj_database_url.UnknownSchemeError and the like: said in one line by manage.py
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL such as "
                                   f"postgres://user@127.0.0.1:5432/walkout ({exc})") from None
    REDIS_URL = _env("REDIS_URL")
    # socket_timeout must exceed channels_redis's 5 s blocking read (BZPOPMIN, core.py brpop_timeout): redis-py ≥ 6
    # defaults it to 5 s, which drops every idle WebSocket after ~5 s.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_connect_timeout": 5}]},
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_TASK_ALWAYS_EAGER = False
    # shared by every web process: the API key throttle's counters (store/throttle.py)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}
    MQTT_URL = _env("MQTT_URL")
    PAYMENT_PROVIDER = os.environ.get("WALKOUT_PAYMENT_PROVIDER", "stripe")
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("WALKOUT_SQLITE_PATH", str(VAR_DIR / "walkout.sqlite3")),
            # IMMEDIATE: a transaction takes the write lock when it begins, so a concurrent writer waits (timeout)
            # instead of failing at once with "database is locked" on a lock upgrade; WAL lets readers go on while
            # the replay writes (docs.djangoproject.com/en/5.2/ref/databases/#sqlite-transaction-behavior).
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
            # Tests use a file too, not Django's default shared-cache in-memory database: there two threads'
            # connections (the test's and the in-process server's, or the store loop's) lock whole tables and fail at
            # once with "database table is locked" instead of waiting out `timeout` as the embedded store does.
            "TEST": {"NAME": str(VAR_DIR / "test.sqlite3")},
        }
    }
    REDIS_URL = ""
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # No broker: tasks run eagerly in this process. (Celery still builds a producer from its connection pool for
    # an eager apply_async, only to pick a serializer, and never connects; the "memory://" URL once set here had no
    # hostname, so kombu warned "No hostname was supplied" at the first task of every run.)
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True
    MQTT_URL = os.environ.get("MQTT_URL", "")
    PAYMENT_PROVIDER = os.environ.get("WALKOUT_PAYMENT_PROVIDER", "dummy")

if PAYMENT_PROVIDER not in {"dummy", "stripe"}:
    raise ImproperlyConfigured(f"WALKOUT_PAYMENT_PROVIDER must be 'dummy' or 'stripe', not {PAYMENT_PROVIDER!r}")

STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = os.environ.get("STRIPE_WEBHOOK_SECRET", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "")  # e.g. a localstripe server for offline tests
if PRODUCTION and PAYMENT_PROVIDER == "stripe":
    _env("STRIPE_SECRET_KEY")
    _env("STRIPE_WEBHOOK_SECRET")

CELERY_TASK_ACKS_LATE = True
# Celery's Django fixup closes a worker's database connections after every task unless this is set; then it closes
# them every this many tasks, and store.celery keeps them between tasks (WORKER_DB_CONN_MAX_AGE_S, checked before
# each task as Django checks before a request)
CELERY_DB_REUSE_MAX = 1000
# Redis broker: a task a worker took but never acknowledged (the worker died) goes back to the queue after
# visibility_timeout seconds (Redis's default is 3 600 s: an exit billed an hour late). It must exceed the longest
# time a task stays unacknowledged, or a running task is delivered a second time: the longest task is the paced
# demo replay (carts.tasks.replay_recording_task, hard time limit REPLAY_TASK_LIMIT_S = 240 s; it refuses a
# recording whose paced length does not fit), then a checkout (a Stripe capture, time limit 120 s) with its
# countdown of EXIT_SETTLE_S. 300 s covers them. Each worker looks for expired messages every
# unacked_restore_interval seconds; kombu's default only scans on every 10th look (about every 100 s), so the
# throttle is 1: a crashed task is redelivered within about 310 s (the stuck-visit sweeper bills a lost checkout
# sooner, CHECKOUT_STUCK_S).
CELERY_VISIBILITY_TIMEOUT_S = float(os.environ.get("WALKOUT_CELERY_VISIBILITY_TIMEOUT_S", "300"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": float(os.environ.get("WALKOUT_CELERY_RESTORE_INTERVAL_S", "10")),
    "unacked_restore_throttle": 1,
}
#: Hard time limit of the replay task (s); kept below the visibility timeout so no running task is redelivered.
REPLAY_TASK_LIMIT_S = min(240.0, 0.8 * CELERY_VISIBILITY_TIMEOUT_S)
# Celery beat (``celery -A store beat``): bill visits whose checkout task was lost (store.gates.services).
CELERY_BEAT_SCHEDULE = {
    "visits-stuck-sweep": {"task": "store.gates.tasks.visits_stuck_sweep_task",
                           "schedule": float(os.environ.get("WALKOUT_SWEEP_EVERY_S", "15"))},
    # review decisions past their undo window: bill the visits they held (backstop of the per-decision task)
    "review-holds-release": {"task": "carts.tasks.review_holds_release_task",
                             "schedule": float(os.environ.get("WALKOUT_SWEEP_EVERY_S", "15"))},
    # review clips past their retention (WALKOUT["REVIEW_CLIP_RETENTION_H"])
    "review-clips-prune": {"task": "carts.tasks.review_clips_prune_task", "schedule": 3600.0},
}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes, store/accounts/lockout.py): WALKOUT_LOGIN_FAILURE_LIMIT failed logins for one
# account, or from one address, lock both out for WALKOUT_LOGIN_LOCKOUT_MIN minutes, the right password included.
AUTHENTICATION_BACKENDS = ["store.accounts.lockout.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("WALKOUT_LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = float(os.environ.get("WALKOUT_LOGIN_LOCKOUT_MIN", "15")) / 60.0  # hours
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "store.accounts.lockout.lockout_response"
AXES_USERNAME_CALLABLE = "store.accounts.lockout.username_of"
AXES_VERBOSE = False
# The client address: REMOTE_ADDR, unless WALKOUT_PROXY_COUNT reverse proxies (which set X-Forwarded-For) stand in
# front; a client's own X-Forwarded-For is never believed otherwise (it would give it a fresh address per guess).
PROXY_COUNT = int(os.environ.get("WALKOUT_PROXY_COUNT", "0"))
if PROXY_COUNT > 0:
    AXES_IPWARE_PROXY_COUNT = PROXY_COUNT
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "accounts:home"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = "en"
# The largest request body read (bytes): a tracker's 50 000 observation rows (vision.api.MAX_BODY_BYTES). Django's
# default, 2.5 MB, refused legitimate tracker bodies before the API could; a larger one is answered 413 in JSON on
# the device APIs (store.urls.bad_request).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5_000_000
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# WhiteNoise serves static files (the admin's CSS too) from the ASGI/WSGI app itself in every profile, so daphne,
# runserver and the test server all serve them the same way. Production serves the collected, hashed files
# (``manage.py collectstatic``); the embedded profile finds them in the apps, without a collect step.
MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
if PRODUCTION:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
else:
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
# Uploaded files (product photos) go through Django's default storage: files under MEDIA_ROOT in every profile
# (point WALKOUT_MEDIA_ROOT at a shared volume when several web servers run). They are served by the manager pages'
# own views, which check who is asking, never as public static files.
MEDIA_ROOT = Path(os.environ.get("WALKOUT_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Embedded profile: e-mails (receipt copies, password resets) are written as files to var/mail/ instead of sent.
EMAIL_BACKEND = os.environ.get(
    "DJANGO_EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = os.environ.get("DJANGO_EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
# The SMTP server (production): Django's own settings, from the environment; the password never in the repo.
EMAIL_HOST = os.environ.get("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("DJANGO_EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("DJANGO_EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("DJANGO_EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = os.environ.get("DJANGO_EMAIL_USE_TLS", "0").lower() in ("1", "true", "yes", "on")
# Seconds an SMTP call may block: well under the receipt e-mail task's time limit (120 s, carts.emails), so a mail
# server that hangs fails the send (recorded on its carts.ReceiptEmail) instead of the task being killed mid-send.
EMAIL_TIMEOUT = float(os.environ.get("DJANGO_EMAIL_TIMEOUT", "30"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Any body parses to a value or a 400 {"reason", "message"}, never a 500 (store/drf.py, store/jsonbody.py).
    "DEFAULT_PARSER_CLASSES": ["store.drf.SafeJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "EXCEPTION_HANDLER": "store.drf.api_exception_handler",
}

# Read-only shared data (real recordings, models, footage) beside the checkout; tests skip what is absent.
SHARED_DIR = Path(os.environ.get("WALKOUT_SHARED", str(BASE_DIR.parent / "shared")))
RECORDINGS_DIR = Path(os.environ.get("WALKOUT_RECORDINGS", str(VAR_DIR / "recordings")))

# Store logic settings (each documented where it is used).
WALKOUT = {
    # Entry pass (store/gates): a pass is valid this long after it is issued (seconds); the app rotates it.
    "PASS_MAX_AGE_S": int(os.environ.get("WALKOUT_PASS_MAX_AGE_S", "60")),
    # Amount pre-authorised on the card at entry, in minor units (a hold, captured down at exit).
    "AUTHORISE_AMOUNT_MINOR": int(os.environ.get("WALKOUT_AUTHORISE_AMOUNT_MINOR", "5000")),
    "CURRENCY": os.environ.get("WALKOUT_CURRENCY", "usd"),
    # Fusion (carts/fusion.py): events whose decision confidence is below this go to the review queue.
    "REVIEW_CONFIDENCE": float(os.environ.get("WALKOUT_REVIEW_CONFIDENCE", "0.6")),
    # After a visit exits, shelf events ending up to this many seconds later are still settled to it.
    "EXIT_SETTLE_S": float(os.environ.get("WALKOUT_EXIT_SETTLE_S", "3.0")),
    # An exited visit whose checkout is this many seconds overdue is billed by the stuck-visit sweeper
    # (store.gates.services.visits_stuck_sweep): its checkout task was lost (broker outage, worker crash).
    "CHECKOUT_STUCK_S": float(os.environ.get("WALKOUT_CHECKOUT_STUCK_S", "30")),
    # An admitted/shopping visit with no activity (pass scan, cart change) for this many seconds whose track is not
    # on the live map is exited and checked out by the same sweep (store.gates.services.visits_abandoned_sweep):
    # what would have seen the shopper leave is gone (a killed embedded store loop, a replay that ended).
    "VISIT_IDLE_EXIT_S": float(os.environ.get("WALKOUT_VISIT_IDLE_EXIT_S", "3600")),
    # Shelf sensors (sensors/live.py): where raw samples are kept (one .npz per controller per minute) and for how
    # long; the session name of live events; how often plate health is re-assessed.
    "RAW_SAMPLES_DIR": os.environ.get("WALKOUT_RAW_SAMPLES_DIR", str(VAR_DIR / "raw")),
    "RAW_RETENTION_H": float(os.environ.get("WALKOUT_RAW_RETENTION_H", "48")),
    "SENSORS_SESSION": os.environ.get("WALKOUT_SENSORS_SESSION", "live"),
    "HEALTH_EVERY_S": float(os.environ.get("WALKOUT_HEALTH_EVERY_S", "10")),
    # Gates, "bring guests": the same pass scanned again at the same gate within GUEST_WINDOW_S seconds admits one
    # declared party member, at most GUEST_CAP per pass (0 turns guests off). Billed to the holder's card.
    "GUEST_WINDOW_S": int(os.environ.get("WALKOUT_GUEST_WINDOW_S", "120")),
    "GUEST_CAP": int(os.environ.get("WALKOUT_GUEST_CAP", "4")),
    # Gate and shelf-controller APIs (store/throttle.py): this many failed API keys from one address lock it out
    # of that API for API_KEY_LOCKOUT_S seconds (429).
    "API_KEY_FAILURE_LIMIT": int(os.environ.get("WALKOUT_API_KEY_FAILURE_LIMIT", "20")),
    "API_KEY_LOCKOUT_S": int(os.environ.get("WALKOUT_API_KEY_LOCKOUT_S", "900")),
    # Review console (carts/review_console.py): a decision can be undone for REVIEW_UNDO_S seconds, and the visits
    # it names are billed only after that; answers whose probability is below REVIEW_OTHER_P are folded under
    # "other" (still one click away).
    "REVIEW_UNDO_S": float(os.environ.get("WALKOUT_REVIEW_UNDO_S", "10")),
    "REVIEW_OTHER_P": float(os.environ.get("WALKOUT_REVIEW_OTHER_P", "0.05")),
    # Review clips (vision/clips.py): each camera worker keeps the last CLIP_RING_S seconds of frames (JPEG, at most
    # CLIP_FPS a second, at most CLIP_WIDTH_PX wide) in memory; when a shelf event goes to review, the cameras that
    # see its shelf write REVIEW_CLIP_PRE_S before to REVIEW_CLIP_POST_S after it under REVIEW_CLIPS_DIR, with the
    # tracks and hands drawn; clips older than REVIEW_CLIP_RETENTION_H hours are not shown and are deleted (by the
    # clip writer at most hourly, the beat task carts.tasks.review_clips_prune_task, or `manage.py prune_review_clips`).
    # Rebuild the product recogniser's gallery (vision.tasks.product_gallery_rebuild_task) from a store's photos
    # when a manager adds or removes one: queued GALLERY_REBUILD_DELAY_S seconds later so a batch of uploads makes one
    # rebuild (in the embedded profile, with no broker, in a timer thread of the web process, never in the request;
    # only new photos are embedded). GALLERY_REBUILD_ON_UPLOAD off: rebuilt only by manage.py build_product_gallery.
    # The product in the hand (vision/hand_crops.py, carts/product_images.py): camera workers keep crops around the
    # shoppers' wrists for a few seconds and the store worker scores the taking hand's against the product gallery
    # when it decides a take (no gallery or no model: decided on weight and hands alone). "0" turns both off.
    "PRODUCT_IMAGES": os.environ.get("WALKOUT_PRODUCT_IMAGES", "1") not in ("0", "false", ""),
    "GALLERY_REBUILD_ON_UPLOAD": os.environ.get("WALKOUT_GALLERY_REBUILD_ON_UPLOAD", "1") not in ("0", "false", ""),
    "GALLERY_REBUILD_DELAY_S": float(os.environ.get("WALKOUT_GALLERY_REBUILD_DELAY_S", "10")),
    "REVIEW_CLIPS_DIR": os.environ.get("WALKOUT_REVIEW_CLIPS_DIR", str(VAR_DIR / "clips")),
    "REVIEW_CLIP_RETENTION_H": float(os.environ.get("WALKOUT_REVIEW_CLIP_RETENTION_H", "72")),
    "REVIEW_CLIP_PRE_S": float(os.environ.get("WALKOUT_REVIEW_CLIP_PRE_S", "3")),
    "REVIEW_CLIP_POST_S": float(os.environ.get("WALKOUT_REVIEW_CLIP_POST_S", "3")),
    "CLIP_RING_S": float(os.environ.get("WALKOUT_CLIP_RING_S", "30")),
    "CLIP_FPS": float(os.environ.get("WALKOUT_CLIP_FPS", "5")),
    "CLIP_WIDTH_PX": int(os.environ.get("WALKOUT_CLIP_WIDTH_PX", "640")),
    # Disputes: receipt lines can be disputed this many hours after the receipt is issued.
    "DISPUTE_WINDOW_H": float(os.environ.get("WALKOUT_DISPUTE_WINDOW_H", "72")),
    # The live store loop (carts/runtime.py, carts/runtime_publish.py): "on" puts gate scans, shelf blocks and camera
    # observations on the store's streams for `run_store` (Redis Streams in production; a worker thread of the process in the embedded
    # profile, which `emulate_store` and the demo turn on); "off" feeds shelf blocks straight to a loop without
    # cameras (the embedded default, and unit tests).
    "STORE_LOOP": os.environ.get("WALKOUT_STORE_LOOP", "on" if PRODUCTION else "off"),
    # Redis key prefix of the store loop's streams, leases and checkpoints (`<prefix>:<store>:<kind>`): one per
    # deployment sharing a Redis.
    "STREAM_PREFIX": os.environ.get("WALKOUT_STREAM_PREFIX", "walkout"),
    # Absolute site URL for links in emails (receipt copy); "" leaves the link out.
    # the site's address in e-mails (receipt links); the embedded profile's is the demo server's
    "SITE_URL": os.environ.get("WALKOUT_SITE_URL", "" if PRODUCTION else "http://127.0.0.1:8000"),
}
DEFAULT_FROM_EMAIL = os.environ.get("DJANGO_DEFAULT_FROM_EMAIL", "Walkout <no-reply@walkout.test>")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("WALKOUT_LOG_LEVEL", "WARNING")},
    "loggers": {
        **{name: {"level": os.environ.get("WALKOUT_LOG_LEVEL", "INFO")}
           for name in ("store", "sensors", "carts", "vision")},
        # 403/404 answers are expected traffic, not server errors: no traceback on the console for them
        "django.request": {"level": "ERROR"},
        # a body over DATA_UPLOAD_MAX_MEMORY_SIZE is answered 413 and logged in one line by store.urls.bad_request;
        # Django's own log of it is a 60-line traceback per request
        "django.security.RequestDataTooBig": {"level": "CRITICAL"},
    },
}
