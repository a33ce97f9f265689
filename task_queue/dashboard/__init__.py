"""The web dashboard: ``create_app(queue_or_path)`` is a WSGI application.

    from task_queue.dashboard import create_app
    app = create_app("tasks.db", auth_token="...")   # mount it, or:
    task-queue --db tasks.db dashboard                # serve it on 127.0.0.1:8000

Needs the ``dashboard`` extra (``pip install 'task_queue[dashboard]'``:
Jinja2 and Werkzeug). Decisions, and why:

* **WSGI**, not ASGI. It runs on our Python 3.10 floor (Starlette 1.x needs
  3.11) and mounts natively where most Python web apps live: in Flask with
  Werkzeug's ``DispatcherMiddleware`` (or in any WSGI server), in Django in
  ``wsgi.py`` the same way or through a catch-all view, in FastAPI and
  other ASGI apps through ``a2wsgi.WSGIMiddleware``. The queue's API is
  blocking anyway (a call waits on the connection's thread), so ASGI
  would only add a thread hop per call.
* **Jinja2 and Werkzeug** (both Pallets projects: small, well kept, typed,
  already what Flask users have installed). Werkzeug routes and parses;
  Jinja2 renders with **autoescape on for every template** and nothing is
  ever marked safe, so a task named ``<script>alert(1)</script>`` shows as
  text; payloads, results and errors are shown as JSON text, never
  evaluated. No pickle anywhere (the queue stores JSON only).
* **Rendered on the server.** Every page's data is in the HTML the server
  sends: it works without JavaScript, and tests read it with a plain HTTP
  client. One small script (``static/dashboard.js``, no build step)
  refreshes a page by fetching it again with ``?fragment=1`` (just the
  content) and swapping it in; the throughput chart is SVG drawn on the
  server. A Content-Security-Policy allows scripts and styles only from
  the dashboard's own static files.
* **Keyset pagination only** (``TaskQueue.list_tasks``' cursor): page 1,000
  costs what page 1 does, at a million rows. Counts come from the counts
  the queue keeps per queue and status, never from ``count(*)``.
* **Bounded scans** for filters no index or kept count narrows (a task
  type): a page examines at most ``scan_rows`` tasks (50,000), shows the
  matches among them, says which tasks it searched, and links to "Search
  older tasks" from where it stopped (see :data:`.views.SCAN_ROWS` and
  ``task_queue/storage/scan.py`` for why).
* **Security** (:mod:`.security`, :mod:`.serve`): 127.0.0.1 by default; any
  other address is refused without an auth token (or an explicit
  ``insecure``); every action is a POST with a CSRF token; read-only mode
  routes no POST at all (405).

Modules: :mod:`.app` (the WSGI app: routing, auth, rendering), :mod:`.views`
(one function per page and action), :mod:`.present` (times, JSON, the
chart), :mod:`.security`, :mod:`.serve` (a threaded server of its own),
``templates/``, ``static/``. The command is ``task-queue dashboard``
(:mod:`task_queue.cli.dashboard`; also ``python -m task_queue.dashboard``).
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import werkzeug  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"task_queue.dashboard needs Jinja2 and Werkzeug ({exc.name} is missing): "
        "pip install 'task_queue[dashboard]'"
    ) from exc

from .app import Dashboard, create_app
from .serve import InsecureBindError, serve

__all__ = ["Dashboard", "InsecureBindError", "create_app", "serve"]
