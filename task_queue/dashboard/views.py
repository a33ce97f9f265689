"""One function per page and per action of the dashboard.

A page view reads through the queue's public API and returns a
:class:`Page` (a template and its values); an action view (always a POST,
its CSRF token already checked by :mod:`.app`) changes one thing and
redirects back (303) with a notice code, so reloading the page does not
repeat the action. Filters and the keyset cursor are in the query string,
checked here: a bad one is a 400 page saying what is wrong.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from ..checks import check_queue_name
from ..queue import TaskQueue
from ..spec import check_task_type
from ..task import Task, TaskStatus
from . import present

if TYPE_CHECKING:
    from .app import Dashboard

#: Tasks per page of a listing.
PAGE_SIZE = 50
#: The most tasks a page examines when its filter is not narrowed by any
#: index or kept count (``create_app(..., scan_rows=)``, ``--scan-rows``):
#: always a task type, alone or with a finished status. Nothing the queue
#: keeps says which task types exist (not even that no task has one: the
#: counts are per queue and status, the failed tasks' index by type knows
#: failed ones only, and a dashboard has no handlers), and an index on the
#: type was rejected (it costs every enqueue 7-25%), so such a filter walks
#: the table, or the finished tasks' index, until it has a page: 150-420 ms
#: for a type of 1 task in 10,000 at a million tasks, every row for a type
#: no task has. Bounded, the page shows the matches among the tasks it
#: examined, says which those were, and links to a search of older ones
#: from where it stopped (a keyset cursor, like "older »"). The storage
#: applies the bound to any walk that reads rows it may not show (a small
#: queue too); filters it reads from an index of their own are not cut.
#: 50,000: a page of a rare type takes 13-17 ms (a walk of the table),
#: completed ones of a rare type 32-37 ms (the finished tasks' index, each
#: row looked up for its type), at a million tasks on a shared 2-core VM
#: (benchmarks/README.md); a queue of 0.1% still fills its page there
#: (20,000 left it at 21 of 50).
SCAN_ROWS = 50_000
#: Workers shown on the overview: those seen within this many seconds.
WORKERS_SEEN_WITHIN = 3600.0
#: A running worker silent for longer than this is shown as late (its
#: heartbeat is every lease / 3 seconds: 10 s by default).
WORKER_LATE_AFTER = 60.0
#: What a purge of the dead-letter set may be limited to, in seconds.
PURGE_AGES = {"0": 0.0, "3600": 3600.0, "86400": 86400.0, "604800": 604800.0}

#: Notices an action redirects with (a fixed text per code: nothing from
#: the query string is shown but numbers).
NOTICES = {
    "retried": "Task {id} is pending again.",
    "not_retried": "Task {id} was not retried: only failed or cancelled tasks can be.",
    "cancelled": "Task {id} is cancelled.",
    "not_cancelled": "Task {id} was not cancelled: it had already finished.",
    "retried_all": "{count} failed tasks are pending again.",
    "purged": "{count} failed tasks were deleted.",
    "paused": "Queue paused: no worker claims from it until it is resumed.",
    "resumed": "Queue resumed.",
    "not_paused": "That queue was not paused.",
}
_LIVE = ("pending", "running", "waiting")


class BadRequest(ValueError):
    """A filter, cursor or form value that cannot be used (shown as 400)."""


@dataclasses.dataclass
class Page:
    """A template to render and its values."""

    template: str
    context: dict[str, Any]
    status: int = 200


class Context:
    """What a view needs: the app, the request, the session's CSRF token."""

    def __init__(self, app: Dashboard, request: Request, csrf_token: str) -> None:
        self.app = app
        self.request = request
        self.csrf_token = csrf_token
        self._has_schedules: bool | None = None

    @property
    def queue(self) -> TaskQueue:
        """The queue shown."""
        return self.app.queue

    @property
    def now(self) -> float:
        """Now, by the queue's clock."""
        return self.queue.clock.time()

    @property
    def here(self) -> str:
        """This page's address inside the app (path and query, without the
        refresh and notice parameters): where an action returns to."""
        query = [
            (k, v)
            for k, v in self.request.args.items(multi=True)
            if k not in ("fragment", "notice", "id", "count", "token")
        ]
        return self.request.path + ("?" + urllib.parse.urlencode(query) if query else "")

    @property
    def has_schedules(self) -> bool:
        """Whether the file knows any schedule (the navigation shows the page then)."""
        if self._has_schedules is None:
            self._has_schedules = bool(self.queue.schedules())
        return self._has_schedules

    def page(self, template: str, *, status: int = 200, **context: Any) -> Page:
        """A :class:`Page`, with the notice of the action that led here."""
        context.setdefault("notice", self._notice())
        context.setdefault("title", "")
        return Page(template, context, status)

    def _notice(self) -> str | None:
        text = NOTICES.get(self.request.args.get("notice", ""))
        if text is None:
            return None
        numbers = {k: _int_arg(self.request.args, k) or 0 for k in ("id", "count")}
        return text.format(id=numbers["id"], count=f"{numbers['count']:,}")

    def back(self, notice: str, **numbers: int) -> Response:
        """Redirect (303) to the page the form was on, with a notice."""
        target = _safe_next(self.request.form.get("next", ""))
        path, _, query = target.partition("?")
        params = [
            (k, v)
            for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)
            if k not in ("notice", "id", "count")
        ]
        params += [("notice", notice), *((k, str(v)) for k, v in numbers.items())]
        return redirect(
            f"{self.request.script_root}{path}?{urllib.parse.urlencode(params)}", code=303
        )


# -- pages ---------------------------------------------------------------------


def overview(ctx: Context) -> Page:
    """Counts per status and per queue, throughput, oldest due task, paused
    queues, workers."""
    queue = ctx.queue
    now = ctx.now
    per_queue = queue.queue_stats()
    totals = {s.value: sum(c[s.value] for c in per_queue.values()) for s in TaskStatus}
    paused = queue.paused()
    oldest = queue.oldest_due()
    workers = []
    for info in queue.workers(seen_within=WORKERS_SEEN_WITHIN):
        if info.stopped_at is not None:
            state = "stopped"
        elif now - info.last_seen > WORKER_LATE_AFTER:
            state = "silent"
        else:
            state = "running"
        workers.append({"info": info, "state": state})
    chart = present.throughput_chart(queue.throughput(since=3600.0, bucket=60.0), now)
    return ctx.page(
        "overview.html", title="Overview", totals=totals, total=sum(totals.values()),
        queues=per_queue, paused=sorted(paused), oldest_due=oldest,
        behind=None if oldest is None else max(0.0, now - oldest), workers=workers,
        chart=chart,
    )  # fmt: skip


def task_list(ctx: Context) -> Page | Response:
    """Tasks filtered by status, type and queue, a page at a time (keyset);
    ``?id=N`` jumps to task N."""
    args = ctx.request.args
    wanted = args.get("id", "").strip().lstrip("#")
    if wanted:
        if not wanted.isdigit() or len(wanted) > 19:
            raise BadRequest(f"not a task id: {wanted!r} (a task id is a number)")
        return redirect(f"{ctx.request.script_root}/tasks/{int(wanted)}", code=303)
    status = _status_arg(args)
    return _listing(ctx, "tasks.html", "Tasks", status)


def failed(ctx: Context) -> Page:
    """The dead-letter set: failed tasks, most recently failed first, with
    retry (one, all) and purge."""
    return _listing(ctx, "failed.html", "Failed tasks", "failed")


def _listing(ctx: Context, template: str, title: str, status: str | None) -> Page:
    args = ctx.request.args
    task_type = args.get("type") or None
    queue_name = args.get("queue") or None
    after = args.get("after") or None
    try:
        if task_type is not None:
            check_task_type(task_type)
        if queue_name is not None:
            check_queue_name(queue_name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    stats = ctx.queue.queue_stats()
    # How many tasks the filter can match, from the kept counts: nothing to
    # read when it is none (say a queue with no failed task, or one that
    # does not exist).
    counts = stats.get(queue_name, {}) if queue_name else _sum_counts(stats)
    matching = counts.get(status, 0) if status else sum(counts.values())
    tasks: list[Task] = []
    next_cursor = None
    searched = None
    if matching:
        try:
            page = ctx.queue.list_tasks(
                status=status, task_type=task_type, queue_name=queue_name, limit=PAGE_SIZE,
                after=after, scan=ctx.app.scan_rows,
            )  # fmt: skip
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        tasks, next_cursor, searched = page.tasks, page.next, page.searched
    filters = {"status": status or "", "type": task_type or "", "queue": queue_name or ""}
    # A page whose scan stopped at the bound links on with "Search older
    # tasks" (from where it stopped) instead of "older »" (from its last row).
    return ctx.page(
        template, title=title, tasks=tasks, filters=filters, matching=matching,
        exact=task_type is None, after=after, searched=searched,
        next_url=None if next_cursor is None else _url(ctx, after=next_cursor),
        first_url=_url(ctx, after=None) if after else None, queue_names=sorted(stats),
    )  # fmt: skip


def task_detail(ctx: Context, task_id: int) -> Page:
    """One task: payload, result, error, traceback, attempts, times,
    progress, dependencies."""
    task = ctx.queue.get_task(task_id)
    if task is None:
        return ctx.page("error.html", status=404, title="Not found", message=f"No task {task_id}.")
    attempts = ctx.queue.attempts(task.id)
    parents = {t.id: t for t in ctx.queue.get_tasks(task.depends_on)} if task.depends_on else {}
    progress = task.progress or None
    fraction = None
    if progress is not None:
        current, total = progress.get("current"), progress.get("total")
        if isinstance(current, (int, float)) and isinstance(total, (int, float)) and total > 0:
            fraction = max(0.0, min(1.0, current / total))
    return ctx.page(
        "task.html", title=f"Task {task.id}", task=task, attempts=attempts,
        parents=[(i, parents.get(i)) for i in task.depends_on], progress=progress,
        fraction=fraction,
    )  # fmt: skip


def schedules(ctx: Context) -> Page:
    """The periodic schedules the file knows."""
    return ctx.page("schedules.html", title="Schedules", schedules=ctx.queue.schedules())


# -- actions (POST only, CSRF checked) ------------------------------------------


def retry_task(ctx: Context, task_id: int) -> Response:
    """A failed or cancelled task back to pending."""
    done = ctx.queue.retry_task(task_id)
    return ctx.back("retried" if done else "not_retried", id=task_id)


def cancel_task(ctx: Context, task_id: int) -> Response:
    """Cancel a pending, waiting or running task."""
    done = ctx.queue.cancel_task(task_id)
    return ctx.back("cancelled" if done else "not_cancelled", id=task_id)


def retry_failed(ctx: Context) -> Response:
    """Every failed task (of the type and queue in the form, when given)
    back to pending."""
    task_type = ctx.request.form.get("type") or None
    queue_name = ctx.request.form.get("queue") or None
    try:
        count = ctx.queue.retry_failed(task_type=task_type, queue_name=queue_name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return ctx.back("retried_all", count=count)


def purge_failed(ctx: Context) -> Response:
    """Delete failed tasks that failed more than the chosen age ago."""
    age = PURGE_AGES.get(ctx.request.form.get("older_than", ""))
    if age is None:
        raise BadRequest(f"older_than must be one of {', '.join(PURGE_AGES)} (seconds)")
    count = ctx.queue.purge(age, statuses=("failed",))
    return ctx.back("purged", count=count)


def pause(ctx: Context, queue_name: str) -> Response:
    """Pause a queue."""
    ctx.queue.pause(_queue_arg(queue_name))
    return ctx.back("paused")


def resume(ctx: Context, queue_name: str) -> Response:
    """Resume a queue."""
    done = ctx.queue.resume(_queue_arg(queue_name))
    return ctx.back("resumed" if done else "not_paused")


# -- helpers -------------------------------------------------------------------


def _status_arg(args: Mapping[str, str]) -> str | None:
    status = args.get("status") or None
    if status is not None and status not in {s.value for s in TaskStatus}:
        choices = ", ".join(s.value for s in TaskStatus)
        raise BadRequest(f"unknown status {status!r}: expected one of {choices}")
    return status


def _queue_arg(queue_name: str) -> str:
    try:
        return check_queue_name(queue_name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _int_arg(args: Mapping[str, str], name: str) -> int | None:
    value = args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _sum_counts(stats: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for counts in stats.values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    return totals


def _url(ctx: Context, **changes: str | None) -> str:
    """This page's address with some query parameters changed (None: removed)."""
    params = {
        k: v
        for k, v in ctx.request.args.items()
        if k not in ("fragment", "notice", "id", "count", "token")
    }
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    query = urllib.parse.urlencode(params)
    return f"{ctx.request.script_root}{ctx.request.path}" + (f"?{query}" if query else "")


def _safe_next(target: str) -> str:
    """A form's ``next``: a path inside the app, or "/" (never another
    site: no scheme, no host, no ``//``)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
        or urllib.parse.urlsplit(target).netloc
    ):
        return "/"
    return target


def is_live(status: str) -> bool:
    """Pending, running or waiting: it may be cancelled."""
    return status in _LIVE


def is_retryable(status: str) -> bool:
    """Failed or cancelled: it may be retried."""
    return status in ("failed", "cancelled")


__all__ = ["BadRequest", "Context", "Page", "is_live", "is_retryable"]
