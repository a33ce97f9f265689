"""Integrations with other projects, each an optional extra.

* :mod:`task_queue.contrib.prometheus`: Prometheus metrics
  (``task_queue[prometheus]``);
* :mod:`task_queue.contrib.opentelemetry`: OpenTelemetry tracing
  (``task_queue[opentelemetry]``);
* :mod:`task_queue.contrib.django`: a backend for Django's Tasks framework
  (``django.tasks``, or the ``django-tasks`` backport), with the
  ``task_queue_worker`` management command (``task_queue[django]``).

Each is built on the core's public surface (events and
:class:`~task_queue.events.Middleware`, the queue's methods); the core
never imports them.
"""
