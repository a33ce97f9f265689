"""``task-queue dashboard``'s options and what it does, shared by the CLI
subcommand and ``python -m task_queue.dashboard``.

Errors are one line on stderr; exit status 2 for a usage error (a refused
address included), 1 when the queue cannot be opened or served.
"""

from __future__ import annotations

import argparse
import os
import sys

#: Read when ``--auth-token`` is not given: a token on the command line is
#: visible to every user of the machine (``ps``), one in the environment is not.
TOKEN_ENV = "TASK_QUEUE_DASHBOARD_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dashboard's options (the queue file's is the caller's)."""
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other needs --auth-token or --insecure)",
    )  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    parser.add_argument(
        "--read-only", action="store_true", help="show everything, change nothing (no actions)"
    )
    parser.add_argument(
        "--auth-token", metavar="T",
        help=f"require this token (open the dashboard once with ?token=T); default ${TOKEN_ENV}",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --host without an auth token",
    )  # fmt: skip


def run(args: argparse.Namespace, db: str) -> int:
    """Serve the dashboard of the queue file ``db`` until SIGINT/SIGTERM;
    the exit status."""
    from ..errors import TaskQueueError
    from .serve import InsecureBindError, check_bind, serve

    token = args.auth_token or os.environ.get(TOKEN_ENV) or None
    if not 0 <= args.port <= 65535:
        return _fail(2, f"--port must be 0 to 65535, got {args.port}")
    try:
        check_bind(args.host, token, args.insecure)
    except InsecureBindError as exc:
        return _fail(2, str(exc))
    if not os.path.exists(db):
        return _fail(1, f"no queue file at {db}")

    def ready(url: str) -> None:
        mode = " (read-only)" if args.read_only else ""
        auth = "; open it once with ?token=<your token>" if token else ""
        print(f"task_queue dashboard of {db} on {url}{mode}{auth}", flush=True)

    try:
        serve(
            db, args.host, args.port, read_only=args.read_only, auth_token=token,
            insecure=args.insecure, ready=ready,
        )  # fmt: skip
    except OSError as exc:  # the port is taken, the address is not ours...
        return _fail(1, f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}")
    except TaskQueueError as exc:
        return _fail(1, f"cannot open the queue {db}: {exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m task_queue.dashboard --db FILE [options]``."""
    parser = argparse.ArgumentParser(
        prog="python -m task_queue.dashboard", description="Serve the task_queue dashboard."
    )
    parser.add_argument("--db", required=True, help="the queue file")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args, args.db)


def _fail(code: int, message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
