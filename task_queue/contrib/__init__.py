"""Integrations with other projects, each an optional extra.

* :mod:`task_queue.contrib.prometheus`: Prometheus metrics
  (``task_queue[prometheus]``);
* :mod:`task_queue.contrib.opentelemetry`: OpenTelemetry tracing
  (``task_queue[opentelemetry]``).

Each is built on the core's public surface (events and
:class:`~task_queue.events.Middleware`, the queue's read methods); the core
never imports them.
"""
