"""``task-queue dashboard``: serve the web dashboard of the queue file.

    task-queue [--db PATH] dashboard [--host 127.0.0.1] [--port 8000] [--read-only]
                                     [--auth-token T] [--insecure] [--scan-rows N]

(also ``python -m task_queue.dashboard``). The dashboard itself lives in
:mod:`task_queue.dashboard` and needs the ``dashboard`` extra; it is
imported only when this command runs, so the rest of the command works
without it. A refused address (not loopback, no token) is a usage error
(exit status 2); no queue at the path, a port taken, a missing extra: 1.
"""

from __future__ import annotations

import argparse
import os

from .common import CliError, db_path, is_queue_file, shown

#: Read when ``--auth-token`` is not given: a token on the command line is
#: visible to every user of the machine (``ps``), one in the environment is not.
TOKEN_ENV = "TASK_QUEUE_DASHBOARD_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dashboard's options (the queue file is the command's ``--db``)."""
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
    parser.add_argument(
        "--scan-rows", type=int, metavar="N",
        help="the most tasks a page filtered by task type examines before it offers to "
        "search older ones (default 50,000)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Serve the dashboard until SIGINT/SIGTERM; the exit status."""
    try:
        from ..dashboard.serve import InsecureBindError, check_bind, serve
    except ImportError as exc:
        raise CliError(str(exc)) from None
    db = db_path(args)
    token = args.auth_token or os.environ.get(TOKEN_ENV) or None
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 to 65535, got {args.port}", 2)
    try:
        check_bind(args.host, token, args.insecure)
    except InsecureBindError as exc:
        raise CliError(str(exc), 2) from None
    if args.scan_rows is not None and args.scan_rows < 1:
        raise CliError(f"--scan-rows must be at least 1, got {args.scan_rows}", 2)
    if not is_queue_file(db):
        raise CliError(f"no task queue at {db}")

    def ready(url: str) -> None:
        mode = " (read-only)" if args.read_only else ""
        auth = "; open it once with ?token=<your token>" if token else ""
        print(f"task_queue dashboard of {shown(db)} on {url}{mode}{auth}", flush=True)

    try:
        serve(
            db, args.host, args.port, read_only=args.read_only, auth_token=token,
            insecure=args.insecure, ready=ready, scan_rows=args.scan_rows,
        )  # fmt: skip
    except OSError as exc:  # the port is taken, the address is not ours...
        raise CliError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0
