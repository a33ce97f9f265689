"""Settings of the test project, for the test process (conftest.py) and the
worker subprocesses (``--settings tqproject.settings``) alike.

TQ_DJANGO_DIR names the directory of the files: ``app.db`` is Django's
database *and* the queue of the ``shared`` alias (enqueues inside
``transaction.atomic()`` join the transaction); ``queue.db`` is the queue of
``default`` (a separate file: enqueues commit at once); ``signals.log`` is
where the app's signal receivers write.

With TASK_QUEUE_TEST_BACKEND=postgres the queue of ``default`` is
TQ_DJANGO_QUEUE_URL instead (OPTIONS["url"]): a PostgreSQL URI whose
``options`` put a fresh schema first on the search path, made by conftest.py
and inherited by the workers through the environment. Django's own database
and the ``shared`` alias stay on SQLite.
"""

from __future__ import annotations

import os

DIR = os.environ["TQ_DJANGO_DIR"]
APP_DB = os.path.join(DIR, "app.db")
QUEUE_DB = os.path.join(DIR, "queue.db")
SIGNALS_LOG = os.path.join(DIR, "signals.log")
if os.environ.get("TASK_QUEUE_TEST_BACKEND") == "postgres":
    QUEUE_OPTIONS = {"url": os.environ["TQ_DJANGO_QUEUE_URL"]}
else:
    QUEUE_OPTIONS = {"path": QUEUE_DB}

SECRET_KEY = "tests"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "task_queue.contrib.django",
    "tqproject.shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": APP_DB,
        # The test run creates the database at the same path as the workers
        # use, so that both see one file.
        "TEST": {"NAME": APP_DB},
        # A deferred transaction that read, then writes after another
        # connection committed, fails at once (SQLITE_BUSY_SNAPSHOT).
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
TASKS = {
    "default": {
        "BACKEND": "task_queue.contrib.django.TaskQueueBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {**QUEUE_OPTIONS, "lease_seconds": 5.0},
    },
    "shared": {
        "BACKEND": "task_queue.contrib.django.TaskQueueBackend",
        "QUEUES": [],  # any queue
        "OPTIONS": {"path": APP_DB, "max_retries": 1},
    },
}
if os.environ.get("TQ_DJANGO_WORKER"):
    # Worker subprocesses log the library's lines (the tests read them);
    # the test process keeps pytest's logging as it is.
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"class": "logging.StreamHandler"}},
        "loggers": {"task_queue": {"handlers": ["stderr"], "level": "INFO"}},
    }
