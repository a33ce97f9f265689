"""The ``task-queue`` command (also ``python -m task_queue``).

    task-queue [--db PATH] COMMAND ...

``--db`` defaults to ``$TASK_QUEUE_DB``, else ``taskqueue.db`` (as
``TaskQueue()``). Commands: ``worker``, ``enqueue``, ``stats``, ``list``,
``show``, ``retry``, ``cancel``, ``purge``, ``pause``, ``resume``, ``queues``,
``schedules``, ``dashboard`` (the web dashboard: ``dashboard.py``);
``task-queue COMMAND --help`` tells more.

Built on argparse rather than click: the core install depends on
sqlite-worker alone, and the command should not add a dependency.

Exit status: 0 done; 1 the command could not do it (an unknown id, no
queue at the path, a module that fails to import, a locked database...);
2 it was asked wrongly (a usage error: bad JSON, an unknown priority, a bad
duration). Errors are one line on stderr, never a traceback. ``--json``
output is one JSON document on stdout and nothing else.

Layout: this module holds the argument tree and the error handling;
``worker.py`` the worker command and its logging, ``inspect.py`` the
reading commands, ``manage.py`` those that change the queue, ``format.py``
the text (durations, times, columns, escaping).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..checks import check_queue_name
from ..errors import TaskQueueError
from ..spec import check_task_type, parse_priority
from ..task import TaskPriority, TaskStatus
from . import dashboard, inspect, manage, worker
from .common import DB_ENV, DEFAULT_DB, CliError, one_line
from .format import parse_duration

PROG = "task-queue"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns
    the exit status (0 done, 1 failed, 2 usage error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        command: Callable[[argparse.Namespace], int] = args.run
        return command(args)
    except _UsageExit as exc:
        return exc.code
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # `task-queue list | head`: the reader left; say nothing more.
        _silence_stdout()
        return 1
    except (TaskQueueError, ValueError, TypeError, LookupError, OSError) as exc:
        return _fail(str(exc) or type(exc).__name__, 1)
    except Exception as exc:  # a bug of ours: still one line, with its type
        return _fail(f"internal error: {type(exc).__name__}: {exc}", 1)


def _fail(message: str, code: int) -> int:
    with contextlib.suppress(OSError):  # stderr gone as well: nothing to tell
        print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
    return code


def _silence_stdout() -> None:
    # Python flushes stdout at exit and would report the broken pipe again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass


class _UsageExit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse with errors on one line and no SystemExit: the exit status
    comes back through main()."""

    def error(self, message: str) -> NoReturn:
        """Report a usage error in one line, exit status 2."""
        _fail(f"{message} (see {self.prog} --help)", 2)
        raise _UsageExit(2)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        """After --help or --version: nothing more to do."""
        if message:
            sys.stderr.write(message)
        raise _UsageExit(status)


# -- argument types: a bad value is a usage error (exit status 2) ----------------


def _argtype(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return fn(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(one_line(str(exc))) from None

    convert.__name__ = fn.__name__
    return convert


@_argtype
def duration(text: str) -> float:
    """30s, 5m, 2h, 7d (or seconds)."""
    return parse_duration(text)


@_argtype
def positive_duration(text: str) -> float:
    """A duration > 0."""
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be more than 0 seconds, got {text!r}")
    return seconds


def _int_from(low: int, high: int | None = None) -> Callable[[str], int]:
    @_argtype
    def integer(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return integer


task_id = _int_from(1, 2**63 - 1)


@_argtype
def payload(text: str) -> Any:
    """A JSON document."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError as exc:  # JSONDecodeError included
        raise ValueError(f"bad JSON payload: {exc}") from None


@_argtype
def priority(text: str) -> TaskPriority | int:
    """low, normal, high or critical; or an int from -100 to 100."""
    try:
        value: object = int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else text
        return parse_priority(value)
    except ValueError:
        names = "/".join(p.name.lower() for p in TaskPriority)
        raise ValueError(
            f"unknown priority {text!r}; expected one of {names} or an int from -100 to 100"
        ) from None


@_argtype
def when(text: str) -> float:
    """ISO-8601 date and time (naive: local time); epoch seconds."""
    spec = text.strip()
    if spec[-1:] in ("Z", "z"):  # fromisoformat() takes it only from Python 3.11
        spec = spec[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: expected ISO-8601, like 2026-12-01T17:35 or "
            "2026-12-01T17:35:00+01:00"
        ) from None
    return moment.timestamp()  # naive: local time, as TaskQueue.enqueue() reads it


@_argtype
def queue_name(text: str) -> str:
    """A queue name."""
    return check_queue_name(text)


@_argtype
def queue_names(text: str) -> tuple[str, ...]:
    """Queue names separated by commas."""
    names = [name.strip() for name in text.split(",")]
    return tuple(check_queue_name(name) for name in names)


@_argtype
def task_type(text: str) -> str:
    """A task type."""
    check_task_type(text)
    return text


@_argtype
def finished_statuses(text: str) -> list[str]:
    """Finished statuses separated by commas."""
    chosen = [s.strip() for s in text.split(",")]
    allowed = ("completed", "failed", "cancelled")
    wrong = [s for s in chosen if s not in allowed]
    if wrong:
        raise ValueError(f"purge deletes {', '.join(allowed)} tasks only, not {', '.join(wrong)}")
    return chosen


# -- the tree ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every command."""
    db_help = f"the queue file (default: ${DB_ENV}, else {DEFAULT_DB})"
    common = _Parser(add_help=False)
    # SUPPRESS: given after the command it overrides the global one; not
    # given, it leaves the global one alone.
    common.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=db_help)
    common.add_argument(
        "--busy-timeout", metavar="S", type=duration, default=argparse.SUPPRESS,
        help="how long to wait for a lock another process holds, then fail "
        "(default: 5s for commands that inspect or change a queue, 30s for worker and enqueue)",
    )  # fmt: skip
    parser = _Parser(
        prog=PROG,
        description="Run and inspect a task_queue queue file.",
        epilog="Times are shown in local time. 'task-queue COMMAND --help' tells more.",
    )
    parser.add_argument("--db", metavar="PATH", help=db_help)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(run=_no_command(parser))

    def command(name: str, help: str, run: Callable[[argparse.Namespace], int]) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(run=run)
        return p

    _worker_parser(command("worker", "run a worker until SIGINT/SIGTERM (or --burst)", worker.run))
    _enqueue_parser(command("enqueue", "add a task; prints its id", manage.enqueue))

    p = command("stats", "tasks per status, in total and per queue", inspect.stats)
    p.add_argument("--queue-name", metavar="Q", type=queue_name, help="only this queue")
    _json(p)

    p = command("list", "one line per task, newest first", inspect.list_tasks)
    p.add_argument("--status", choices=[s.value for s in TaskStatus])
    p.add_argument("--type", metavar="T", type=task_type, help="only tasks of this type")
    p.add_argument("--queue-name", metavar="Q", type=queue_name, help="only this queue")
    p.add_argument(
        "--limit", metavar="N", type=_int_from(1, 10_000), default=50,
        help="at most N tasks (default 50, up to 10000)",
    )  # fmt: skip
    _json(p)

    p = command("show", "every field of one task, error and traceback included", inspect.show)
    p.add_argument("id", metavar="ID", type=task_id)
    _json(p)

    p = command(
        "retry",
        "put failed or cancelled tasks back to pending with a fresh retry budget; prints "
        "the ids put back (with --all-failed, how many)",
        manage.retry,
    )
    p.add_argument("ids", metavar="ID", type=task_id, nargs="*")
    p.add_argument("--all-failed", action="store_true", help="every failed task")
    p.add_argument("--type", metavar="T", type=task_type, help="with --all-failed: of this type")
    p.add_argument(
        "--queue-name", metavar="Q", type=queue_name, help="with --all-failed: in this queue"
    )

    p = command(
        "cancel", "cancel pending or running tasks; prints the ids cancelled", manage.cancel
    )
    p.add_argument("ids", metavar="ID", type=task_id, nargs="+")

    p = command("purge", "delete finished tasks; prints how many", manage.purge)
    p.add_argument(
        "--older-than", metavar="AGE", type=duration, required=True,
        help="finished more than AGE ago (30s, 5m, 2h, 7d)",
    )  # fmt: skip
    p.add_argument(
        "--status", metavar="S,S", type=finished_statuses, default=["completed", "cancelled"],
        help="which finished statuses (default completed,cancelled; failed ones are the "
        "dead-letter set, kept unless named)",
    )  # fmt: skip

    p = command("pause", "workers claim nothing from queue Q until resumed", manage.pause)
    p.add_argument("queue", metavar="Q", type=queue_name)
    p = command("resume", "workers claim from queue Q again", manage.resume)
    p.add_argument("queue", metavar="Q", type=queue_name)
    p = command("queues", "every queue: its counts and whether it is paused", inspect.queues)
    _json(p)
    p = command(
        "schedules",
        "every periodic schedule the file knows: next fire, last slot fired and its task",
        inspect.schedules,
    )
    _json(p)
    p = command(
        "dashboard",
        "serve the web dashboard (the dashboard extra) on 127.0.0.1:8000 until SIGINT/SIGTERM",
        dashboard.run,
    )
    dashboard.add_arguments(p)
    return parser


def _worker_parser(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Import each MODULE so its handlers register, then run a Worker until SIGINT or "
        "SIGTERM: it drains (running tasks may finish, up to --drain-timeout); a second "
        "signal gives the running tasks back at once."
    )
    p.add_argument(
        "modules", metavar="MODULE", nargs="+",
        help="pkg.mod (handlers in TASK_HANDLERS) or pkg.mod:name (name is a HandlerRegistry); "
        "imported from the current directory too",
    )  # fmt: skip
    p.add_argument(
        "-c", "--concurrency", metavar="N", type=_int_from(1, 1024), default=4,
        help="threads running handlers (default 4)",
    )  # fmt: skip
    p.add_argument(
        "--async-concurrency", metavar="N", type=_int_from(1, 100_000), default=200,
        help="async def handlers running at once on the worker's event loop (default 200)",
    )  # fmt: skip
    p.add_argument(
        "--queues", metavar="A,B", type=queue_names, help="serve only these queues (default all)"
    )
    p.add_argument(
        "--burst", action="store_true",
        help="stop (exit 0) once nothing it can run is due and nothing runs; tasks scheduled "
        "later, retries still backing off and paused queues are not waited for",
    )  # fmt: skip
    p.add_argument(
        "--drain-timeout", metavar="S", type=duration, default=30.0,
        help="at shutdown, how long running tasks may take before they are given back "
        "(default 30s)",
    )  # fmt: skip
    p.add_argument(
        "--poll-interval", metavar="S", type=positive_duration, default=0.05,
        help="how often to look for tasks other processes enqueued (default 0.05s)",
    )  # fmt: skip
    p.add_argument(
        "--prefetch", metavar="N", type=_int_from(0), default=None,
        help="tasks claimed ahead of a free thread (default: adapted to task length)",
    )  # fmt: skip
    p.add_argument("--name", metavar="NAME", help="the worker's name in logs and worker_id")
    p.add_argument(
        "--log-level", default="info", type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="default info: a line at start, one per task outcome, one at stop",
    )  # fmt: skip
    p.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="json: one JSON object per line",
    )  # fmt: skip
    p.add_argument(
        "--metrics-port", metavar="PORT", type=_int_from(0, 65535), default=None,
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (needs "
        "task_queue[prometheus]; 0: a free port, logged); one port per process",
    )  # fmt: skip
    p.add_argument(
        "--metrics-addr", metavar="ADDR", default="0.0.0.0",
        help="with --metrics-port: the address to listen on (default 0.0.0.0: every interface)",
    )  # fmt: skip


def _enqueue_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("task_type", metavar="TASK_TYPE", type=task_type)
    p.add_argument("--payload", metavar="JSON", type=payload, help="the handler's input (JSON)")
    p.add_argument("--name", metavar="N", help="a label (default: the task type)")
    p.add_argument(
        "--priority", type=priority, default=TaskPriority.NORMAL,
        help="low, normal (default), high or critical",
    )  # fmt: skip
    at = p.add_mutually_exclusive_group()
    at.add_argument("--delay", metavar="D", type=duration, help="run after D (30s, 5m, 2h)")
    at.add_argument(
        "--at", metavar="TIME", type=when,
        help="run at TIME, ISO-8601 (2026-12-01T17:35; without a zone: local time)",
    )  # fmt: skip
    p.add_argument("--queue-name", metavar="Q", type=queue_name, default="default")
    p.add_argument(
        "--unique-key", metavar="K",
        help="while a live task has key K, print its id and add nothing",
    )  # fmt: skip
    p.add_argument(
        "--max-retries", metavar="N", type=_int_from(0, 2**63 - 1), default=3,
        help="retries after the first attempt (default 3)",
    )  # fmt: skip
    p.add_argument(
        "--timeout", metavar="S", type=positive_duration, help="time limit of one attempt"
    )


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (times: UTC epoch seconds)"
    )


def _no_command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        parser.error("a command is required")

    return run


def _version() -> str:
    from .. import __version__

    return __version__


__all__ = ["build_parser", "main"]
