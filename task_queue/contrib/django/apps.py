"""The Django app: ``"task_queue.contrib.django"`` in INSTALLED_APPS."""

from __future__ import annotations

from django.apps import AppConfig


class TaskQueueDjangoConfig(AppConfig):
    """Brings the ``task_queue_worker`` command; its label does not clash
    with Django's own ``django`` package name."""

    name = "task_queue.contrib.django"
    label = "task_queue_django"
    verbose_name = "task_queue"

    def ready(self) -> None:
        """With the django-tasks backport, register its checks and logging
        receivers even when ``django_tasks`` is not in INSTALLED_APPS."""
        from .compat import load_framework_checks

        load_framework_checks()
