"""The dashboard mounted in a Flask app, at /dashboard.

    pip install flask 'task_queue[dashboard]'     # or: pip install -e '.[examples,dashboard]'
    python examples/dashboard_in_flask.py          # http://127.0.0.1:5000/dashboard/
    python examples/dashboard_in_flask.py --db web.db

The dashboard is a WSGI app; Werkzeug's ``DispatcherMiddleware`` sends
every request under /dashboard to it and the rest to Flask, and sets
``SCRIPT_NAME``, so the dashboard's links and cookies stay under
/dashboard. It shares the app's TaskQueue (one per process). Put it behind
your own login: pass ``auth_token=`` here, or wrap ``dashboard`` in the
middleware that checks your users.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
from typing import Any

try:
    from flask import Flask
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("This example needs Flask: pip install flask  (or: pip install -e '.[examples]')")
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from task_queue import TaskQueue
from task_queue.dashboard import create_app as create_dashboard


def create_app(db_path: str, *, auth_token: str | None = None) -> Flask:
    app = Flask(__name__)
    queue = TaskQueue(db_path)
    app.extensions["task_queue"] = queue
    app.extensions["task_queue_close"] = queue.close

    @app.get("/")
    def index() -> Any:
        return '<p>My app. Its queue: <a href="/dashboard/">/dashboard/</a></p>'

    dashboard = create_dashboard(queue, auth_token=auth_token)
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/dashboard": dashboard})  # type: ignore[method-assign]
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="task_queue's dashboard inside a Flask app")
    parser.add_argument("--db", help="queue file (default: a temporary one, removed at exit)")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="task-queue-flask-dashboard-")
        atexit.register(tmp.cleanup)
        args.db = os.path.join(tmp.name, "webapp.db")
    app = create_app(args.db)
    queue: TaskQueue = app.extensions["task_queue"]
    queue.enqueue("Welcome email to ada@example.com", "send_email", {"to": "ada@example.com"})
    atexit.register(queue.close)
    app.run(host="127.0.0.1", port=args.port, use_reloader=False)


if __name__ == "__main__":
    main()
