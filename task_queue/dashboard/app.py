"""The dashboard as a WSGI application: routing, auth, CSRF, rendering.

:func:`create_app` returns a :class:`Dashboard`, a plain WSGI callable. One
object serves any number of threads (a ``TaskQueue`` is thread-safe, the
rest is read-only after construction).

Each request goes: static files (public: CSS and JS only) -> the auth
token, when there is one -> in read-only mode any POST is 405 -> a POST's
CSRF token -> the route's view (:mod:`.views`) -> a template, or only its
``content`` block when ``?fragment=1`` asks (what the live refresh fetches).
Every response carries a strict Content-Security-Policy (scripts and styles
only from the dashboard's own static files), ``X-Frame-Options: DENY`` and
``Cache-Control: no-store`` (the pages hold task data).
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from ..errors import StorageError
from ..queue import TaskQueue
from ..task import TaskStatus
from . import present, views
from .security import AUTH_COOKIE, CSRF_FIELD, SESSION_COOKIE, Guard

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

View = Callable[..., "views.Page | Response"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


class Dashboard:
    """The dashboard's WSGI application (see :func:`create_app`)."""

    def __init__(
        self,
        queue: TaskQueue,
        *,
        read_only: bool = False,
        auth_token: str | None = None,
        prefix: str = "",
        secret_key: bytes | str | None = None,
        refresh_seconds: float = 3.0,
        owns_queue: bool = False,
        scan_rows: int = views.SCAN_ROWS,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"prefix must start with '/' and not end with one, got {prefix!r}")
        if not refresh_seconds >= 0:
            raise ValueError(f"refresh_seconds must be >= 0, got {refresh_seconds!r}")
        if isinstance(scan_rows, bool) or not isinstance(scan_rows, int) or scan_rows < 1:
            raise ValueError(f"scan_rows must be an int >= 1, got {scan_rows!r}")
        #: The queue shown.
        self.queue = queue
        #: No action at all: every POST is answered 405, no form is shown.
        self.read_only = read_only
        #: The path the app is mounted at when the server does not say so
        #: (``SCRIPT_NAME``); "" at the root.
        self.prefix = prefix
        self.refresh_seconds = refresh_seconds
        #: The most rows a page of a filter no index narrows examines
        #: (:data:`.views.SCAN_ROWS`).
        self.scan_rows = scan_rows
        self.guard = Guard(auth_token, secret_key)
        self._owns_queue = owns_queue
        self._static = {
            name: resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
            for name in _STATIC
        }
        self._static_version = hashlib.sha256(b"".join(self._static.values())).hexdigest()[:12]
        self._env = _environment()
        rules = [
            Rule("/", endpoint="overview", methods=["GET"]),
            Rule("/tasks", endpoint="task_list", methods=["GET"]),
            Rule("/tasks/<int:task_id>", endpoint="task_detail", methods=["GET"]),
            Rule("/failed", endpoint="failed", methods=["GET"]),
            Rule("/schedules", endpoint="schedules", methods=["GET"]),
            Rule("/static/<name>", endpoint="static", methods=["GET"]),
        ]
        if not read_only:  # read-only routes no POST at all
            rules += [
                Rule("/tasks/<int:task_id>/retry", endpoint="retry_task", methods=["POST"]),
                Rule("/tasks/<int:task_id>/cancel", endpoint="cancel_task", methods=["POST"]),
                Rule("/failed/retry", endpoint="retry_failed", methods=["POST"]),
                Rule("/failed/purge", endpoint="purge_failed", methods=["POST"]),
                Rule("/queues/<queue_name>/pause", endpoint="pause", methods=["POST"]),
                Rule("/queues/<queue_name>/resume", endpoint="resume", methods=["POST"]),
            ]
        self._map = Map(rules, strict_slashes=False, merge_slashes=False)
        self._views: dict[str, View] = {
            "overview": views.overview, "task_list": views.task_list,
            "task_detail": views.task_detail, "failed": views.failed,
            "schedules": views.schedules, "retry_task": views.retry_task,
            "cancel_task": views.cancel_task, "retry_failed": views.retry_failed,
            "purge_failed": views.purge_failed, "pause": views.pause, "resume": views.resume,
        }  # fmt: skip

    # -- WSGI ----------------------------------------------------------------
    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.prefix:
            path = environ.get("PATH_INFO", "")
            if path == self.prefix or path.startswith(self.prefix + "/"):
                environ = {
                    **environ,
                    "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + self.prefix,
                    "PATH_INFO": path[len(self.prefix) :],
                }
        request = Request(environ)
        response = self._respond(request)
        _secure_headers(response)
        return response(environ, start_response)

    def close(self) -> None:
        """Close the queue if this app opened it (``create_app(path)``)."""
        if self._owns_queue:
            self.queue.close()

    # -- one request ----------------------------------------------------------
    def _respond(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            if request.method == "POST" and self.read_only:
                raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
            endpoint, args = adapter.match()
        except HTTPException as exc:
            if isinstance(exc, NotFound) and request.method == "POST" and self.read_only:
                exc = MethodNotAllowed(valid_methods=["GET", "HEAD"])
            return self._error(request, exc.code or 500, exc.description or exc.name)
        if endpoint == "static":
            return self._static_file(request, args["name"])
        if self.guard.needs_token:
            offered = request.args.get("token")
            if offered is not None and request.method == "GET":
                if not self.guard.token_matches(offered):
                    return self._unauthorized(request, "That token is not the dashboard's token.")
                return self._accept_token(request)
            if not self.guard.authenticated(request):
                return self._unauthorized(request, None)
        session = request.cookies.get(SESSION_COOKIE) or ""
        new_session = not session
        if new_session:
            session = self.guard.new_session()
        if request.method == "POST":
            refusal = self.guard.csrf_refusal(request)
            if refusal is not None:
                return self._error(request, 403, f"Action refused: {refusal}.")
        ctx = views.Context(self, request, self.guard.csrf_token(session))
        try:
            result = self._views[endpoint](ctx, **args)
        except views.BadRequest as exc:
            result = ctx.page("error.html", status=400, title="Bad request", message=str(exc))
        except StorageError as exc:
            return self._error(request, 503, f"The queue cannot answer now: {exc}")
        response = result if isinstance(result, Response) else self._render(ctx, result)
        if new_session:
            response.set_cookie(
                SESSION_COOKIE, session, path=self._cookie_path(request), httponly=True,
                samesite="Strict", secure=request.scheme == "https",
            )  # fmt: skip
        return response

    def _render(self, ctx: views.Context, page: views.Page) -> Response:
        template = self._env.get_template(page.template)
        fragment = ctx.request.args.get("fragment") == "1"
        body = template.render(
            **self._globals(ctx.request.script_root, ctx, fragment), **page.context
        )
        return Response(body, status=page.status, content_type="text/html; charset=utf-8")

    def _globals(self, root: str, ctx: views.Context | None, fragment: bool) -> dict[str, Any]:
        now = self.queue.clock.time()
        return {
            "root": root,
            "static": lambda name: f"{root}/static/{name}?v={self._static_version}",
            "read_only": self.read_only,
            "csrf_field": CSRF_FIELD,
            "csrf_token": ctx.csrf_token if ctx is not None else "",
            "fragment": fragment,
            "refresh": self.refresh_seconds,
            "now": now,
            "relative": lambda ts: present.relative(ts, now),
            "is_live": views.is_live,
            "is_retryable": views.is_retryable,
            "here": ctx.here if ctx is not None else "/",
            "statuses": [s.value for s in TaskStatus],
            "has_schedules": ctx.has_schedules if ctx is not None else False,
        }

    def _static_file(self, request: Request, name: str) -> Response:
        if name not in _STATIC:
            return self._error(request, 404, "No such file.")
        response = Response(self._static[name], content_type=_STATIC[name])
        if request.args.get("v") == self._static_version:
            response.headers["Cache-Control"] = "public, max-age=86400, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"
        return response

    def _accept_token(self, request: Request) -> Response:
        """``?token=`` was right: set the auth cookie and go to the same
        address without the token."""
        query = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        target = request.script_root + request.path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        response = redirect(target, code=303)
        response.set_cookie(
            AUTH_COOKIE, self.guard.auth_cookie, path=self._cookie_path(request), httponly=True,
            samesite="Strict", secure=request.scheme == "https",
        )  # fmt: skip
        return response

    def _unauthorized(self, request: Request, why: str | None) -> Response:
        response = self._error(
            request, 401,
            why or "This dashboard needs its auth token: open it once with ?token=<token> "
            "added to the address, or send an 'Authorization: Bearer <token>' header.",
        )  # fmt: skip
        response.headers["WWW-Authenticate"] = 'Bearer realm="task_queue dashboard"'
        return response

    def _error(self, request: Request, status: int, message: str) -> Response:
        """A small page saying what went wrong (no navigation: the caller
        may not be allowed to see anything else)."""
        template = self._env.get_template("error.html")
        values = {**self._globals(request.script_root, None, False), "refresh": 0, "notice": None}
        body = template.render(
            **values, title=f"{status} {_REASONS.get(status, 'Error')}", message=message,
            bare=True,
        )  # fmt: skip
        response = Response(body, status=status, content_type="text/html; charset=utf-8")
        if status == 405:
            response.headers["Allow"] = "GET, HEAD"
        return response

    @staticmethod
    def _cookie_path(request: Request) -> str:
        return (request.script_root or "") + "/"


_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 503: "Service Unavailable",
}  # fmt: skip


def _secure_headers(response: Response) -> None:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("task_queue.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name: nothing is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        utc=present.utc, iso=present.iso, duration=present.duration, json=present.pretty_json,
        clip=present.clip, one_line=present.one_line, count=present.count,
    )  # fmt: skip
    return env


def create_app(
    queue_or_path: TaskQueue | str | os.PathLike[str],
    *,
    read_only: bool = False,
    auth_token: str | None = None,
    prefix: str = "",
    secret_key: bytes | str | None = None,
    refresh_seconds: float = 3.0,
    scan_rows: int = views.SCAN_ROWS,
) -> Dashboard:
    """The dashboard of a queue, as a WSGI application.

    queue_or_path: a TaskQueue (yours: the app never closes it) or the path
        of a queue file (opened here; ``app.close()`` closes it).
    read_only: show everything, change nothing: no POST is routed (405)
        and no action is shown.
    auth_token: when given, every request must show it (see
        :mod:`.security`): ``?token=`` once in a browser (it sets a
        cookie), or ``Authorization: Bearer``.
    prefix: the path it is mounted at, for servers that do not set
        ``SCRIPT_NAME`` (Werkzeug's ``DispatcherMiddleware``, and so Flask,
        does; then leave it "").
    secret_key: the key of the CSRF tokens; random per process by default.
        Give the same one to every process serving one address.
    refresh_seconds: how often pages refresh themselves (0: never).
    scan_rows: the most tasks a page of a filter no index narrows (a
        task type) examines; when they hold less than a page, it says so
        and links to a search of older tasks from where it stopped.
    """
    if isinstance(queue_or_path, TaskQueue):
        return Dashboard(
            queue_or_path, read_only=read_only, auth_token=auth_token, prefix=prefix,
            secret_key=secret_key, refresh_seconds=refresh_seconds, scan_rows=scan_rows,
        )  # fmt: skip
    queue = TaskQueue(queue_or_path)
    try:
        return Dashboard(
            queue, read_only=read_only, auth_token=auth_token, prefix=prefix,
            secret_key=secret_key, refresh_seconds=refresh_seconds, owns_queue=True,
            scan_rows=scan_rows,
        )  # fmt: skip
    except BaseException:
        queue.close()
        raise
