"""A backend for Django's Tasks framework, on a task_queue SQLite file or
PostgreSQL database.

Works with Django 6.x (``django.tasks``, Python 3.12+) and with Django 5.2
plus the ``django-tasks`` backport (module ``django_tasks``): the same
backend class, the framework found at import (:mod:`.compat`). Install with
``pip install 'task_queue[django]'``, which picks the right one for the
Python it runs on.

Settings::

    INSTALLED_APPS = [..., "task_queue.contrib.django"]  # app label: task_queue_django
    TASKS = {
        "default": {
            "BACKEND": "task_queue.contrib.django.TaskQueueBackend",
            "QUEUES": ["default", "emails"],  # [] or absent: see Django's docs
            "OPTIONS": {
                "path": BASE_DIR / "tasks.db",  # the queue's SQLite file, or:
                # "url": "postgresql://app@db.internal/app",  # a PostgreSQL queue
                "max_retries": 0,      # retries after the first attempt (default 0)
                "timeout": None,       # seconds per attempt (default: no limit)
                "lease_seconds": 30,   # a dead worker's task runs again after this
                "modules": [],         # more modules defining tasks, for the worker
            },
        }
    }

Exactly one of ``path`` (a SQLite file, str or Path) and ``url`` (a
PostgreSQL URI, ``postgresql://`` or ``postgres://``, with libpq's query
parameters; needs ``task_queue[postgres]``) says where the queue lives; why
two keys: :mod:`.options`. A bad OPTIONS entry (an unknown key, neither or
both of ``path`` and ``url``, a URL in ``path``, a ``url`` that is not a
PostgreSQL URI, a wrong type, ``url`` without psycopg installed) or a
queue name the queue cannot store (1 to 100 letters, digits and ``-_.:``)
is reported by ``manage.py check`` (``task_queue_django.E001``; a password
in a URI is shown as ``***``) and raises ImproperlyConfigured at first use.

Run the tasks with ``manage.py task_queue_worker`` (options: ``--queue-name
a,b`` or ``*``, default the ``default`` queue; ``--concurrency N``, default
4, and 1 for strict claim order; ``--burst`` to run what is due and exit 0;
``--backend ALIAS``; ``--drain-timeout S``). It imports each installed
app's ``tasks`` module (and ``OPTIONS["modules"]``): a task function is
found through a registry those imports fill (every Task ``@task`` creates
registers itself), never by importing a path read from the database.
SIGINT/SIGTERM drain (running tasks may finish, then the rest go back to
the queue unused), a second signal gives them back at once. Delivery is at
least once, as for every task_queue task: make tasks idempotent.

What the backend supports (Django's ``supports_*`` flags):

* ``supports_defer``: ``run_after`` as an aware datetime (naive without
  USE_TZ), or a ``timedelta`` from the enqueue (Django documents that form;
  its own check crashes on it under USE_TZ, so this backend checks it);
* ``supports_priority``: any int from -100 to 100, stored exactly and
  ordered across the whole range, higher first (Django's default is 0; the
  core's named levels LOW..CRITICAL are 1..4, so a Django task at the
  default priority runs after native task_queue tasks of any named level
  in the same queue);
* ``supports_get_result``: ``get_result(id)`` from any thread or process;
  the id is the task_queue task id, as a string;
* ``supports_async_task``: ``async def`` tasks run in the worker's thread
  through ``async_to_sync``, one event loop per attempt.

``TaskResult`` fields and statuses: see :mod:`.results` (pending and
retrying -> READY, running -> RUNNING, completed -> SUCCESSFUL, failed and
cancelled -> FAILED; ``errors`` and ``worker_ids`` one per attempt;
``started_at`` the first attempt's start). ``takes_context=True`` tasks
get a ``TaskContext`` whose ``attempt`` is 1 on the first run.

Retries: none by default, like Django's own backends. ``OPTIONS["max_retries"]``
sets the backend's default, ``@task(max_retries=3)`` (and ``timeout=``) a
task's own: ``@task`` passes extra keywords to the backend's
``task_class``, :class:`TaskQueueTask`. Retries back off exponentially
with jitter (the queue's RetryPolicy), each failed attempt kept in
``errors``.

Signals: ``task_enqueued`` once the task is committed; ``task_started`` in
the worker just before the function runs; ``task_finished`` once the final
outcome is committed, carrying that committed status (see :mod:`.signals`).

Transactions: when DATABASES["default"] is the same SQLite file as
``OPTIONS["path"]``, the queue's tables are created in Django's database
(beside its tables) and an enqueue inside ``transaction.atomic()`` joins
that transaction: the task exists once the outermost block commits
(``task_enqueued`` is sent then), and a rollback leaves none. The queue
must be created outside a transaction first (starting the worker does it).
Use ``"OPTIONS": {"transaction_mode": "IMMEDIATE"}`` in DATABASES: a
deferred SQLite transaction that read, then writes after another
connection committed, fails at once. Any other database, and any queue on
PostgreSQL (``url``), even in Django's own PostgreSQL database: an enqueue
commits at once, through the queue's own connections, whatever the atomic
block does later; write ``transaction.on_commit(lambda:
my_task.enqueue(...))`` when the task must not run for a transaction that
rolls back.

One TaskQueue per process and queue (file, or URI) is shared by every
thread's backend instance and opened on first use, never at import
(:mod:`.queues`).
"""

from __future__ import annotations

from .backend import TaskQueueBackend, TaskQueueTask

__all__ = ["TaskQueueBackend", "TaskQueueTask"]
