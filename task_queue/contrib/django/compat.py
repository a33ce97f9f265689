"""Django's Tasks framework, from wherever it is: ``django.tasks`` (Django
6.x) or the ``django-tasks`` backport (module ``django_tasks``, for Django
5.2), detected once, at import. Everything else imports it from here.

The two agree on the API this backend uses; the names differ only in the
backport's exceptions (``InvalidTaskError`` for ``InvalidTask``).
"""

from __future__ import annotations

try:  # Django 6.x
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    #: Where the framework came from: "django.tasks" or "django_tasks".
    FRAMEWORK = "django.tasks"
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import (
        task_enqueued,
        task_finished,
        task_started,
    )
    from django_tasks.utils import normalize_json

    try:
        from django_tasks.exceptions import InvalidTask
    except ImportError:  # django-tasks <= 0.12
        from django_tasks.exceptions import (
            InvalidTaskError as InvalidTask,
        )

    FRAMEWORK = "django_tasks"


def load_framework_checks() -> None:
    """Register the framework's own system checks and signal receivers
    (Django 6 does so when ``django.tasks`` is imported; the backport only
    from its app's ``ready()``, which needs ``django_tasks`` in
    INSTALLED_APPS: this makes that entry optional)."""
    if FRAMEWORK == "django_tasks":
        import django_tasks.checks
        import django_tasks.signals  # noqa: F401


__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "FRAMEWORK",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
