"""Serving the dashboard on its own: Werkzeug's threaded WSGI server.

The server is Werkzeug's (``werkzeug.serving.make_server``, threaded: one
thread per request), the one Flask's ``app.run`` uses, without the
reloader, the debugger or the "development server" banner. That is enough
for what it serves: a few operators' browsers and their refreshes, every
page a few milliseconds of SQLite reads. Behind a real front server (TLS,
many users), mount :func:`~task_queue.dashboard.create_app` in your WSGI
server instead.

Binding: 127.0.0.1 by default. Any address that is not loopback is refused
unless the dashboard has an auth token, or ``insecure=True`` says that
exposing it without one is intended (a private network, a front server
doing its own auth).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from ..queue import TaskQueue
from .app import Dashboard, create_app
from .views import SCAN_ROWS

LOGGER = logging.getLogger(__name__)


class InsecureBindError(ValueError):
    """A non-loopback address without an auth token (nor ``insecure``)."""


def is_loopback(host: str) -> bool:
    """``host`` is only reachable from this machine: ``localhost`` or a
    loopback IP address (127.0.0.0/8, ::1). A host name other than
    localhost counts as not loopback (it may resolve to anything)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth_token: str | None, insecure: bool) -> None:
    """Raise InsecureBindError for a non-loopback ``host`` without a token,
    unless ``insecure``."""
    if auth_token is None and not insecure and not is_loopback(host):
        raise InsecureBindError(
            f"refusing to serve the dashboard on {host} without an auth token: "
            "anyone who can reach it could retry, cancel and purge tasks. "
            "Give --auth-token (or TASK_QUEUE_DASHBOARD_TOKEN), or --insecure if you mean it"
        )


class _RequestHandler(WSGIRequestHandler):
    """Werkzeug's handler, not logging the live refresh's successful polls
    (one every few seconds per open page)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if str(code) == "200" and "fragment=1" in getattr(self, "path", ""):
            return
        super().log_request(code, size)


def make_dashboard_server(
    app: Dashboard, host: str = "127.0.0.1", port: int = 8000, *, insecure: bool = False
) -> BaseWSGIServer:
    """A threaded server for ``app`` bound to ``host:port`` (port 0: any
    free port; ``server.port`` says which), not yet serving: call
    ``serve_forever()``, and ``shutdown()`` from another thread."""
    check_bind(host, app.guard.auth_token, insecure)
    return make_server(host, port, app, threaded=True, request_handler=_RequestHandler)


def serve(
    queue_or_path: TaskQueue | str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    read_only: bool = False,
    auth_token: str | None = None,
    insecure: bool = False,
    ready: Callable[[str], Any] | None = None,
    stop: threading.Event | None = None,
    scan_rows: int | None = None,
) -> None:
    """Serve the dashboard of a queue until SIGINT or SIGTERM (in the main
    thread), or until ``stop`` is set.

    ready: called with the dashboard's URL once it accepts connections.
    scan_rows: see :func:`.create_app` (None: its default).
    Raises InsecureBindError (before opening anything) for a non-loopback
    ``host`` without ``auth_token`` unless ``insecure``.
    """
    check_bind(host, auth_token, insecure)
    app = create_app(
        queue_or_path, read_only=read_only, auth_token=auth_token,
        scan_rows=SCAN_ROWS if scan_rows is None else scan_rows,
    )  # fmt: skip
    try:
        server = make_dashboard_server(app, host, port, insecure=insecure)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{server.port}/"
        stopper = threading.Thread(
            target=_stop_when_set, args=(server, stop), name="dashboard-stop", daemon=True
        )
        restore = _stop_on_signals(server)
        try:
            if stop is not None:
                stopper.start()
            if ready is not None:
                ready(url)
            server.serve_forever(poll_interval=0.2)
        finally:
            restore()
            server.server_close()
    finally:
        app.close()


def _stop_when_set(server: BaseWSGIServer, stop: threading.Event | None) -> None:
    if stop is not None:
        stop.wait()
        server.shutdown()


def _stop_on_signals(server: BaseWSGIServer) -> Callable[[], None]:
    """SIGINT and SIGTERM stop the server (only the main thread may set
    handlers); returns what puts the old handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: FrameType | None) -> None:
        LOGGER.info("signal %d: stopping the dashboard", signum)
        # shutdown() waits for serve_forever() to return: not from this
        # thread, which is the one running it.
        threading.Thread(target=server.shutdown, name="dashboard-shutdown").start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
