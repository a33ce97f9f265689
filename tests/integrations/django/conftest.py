"""The Django backend's tests, on Django 6.x (``django.tasks``) or Django
5.2 with the django-tasks backport, whichever is installed; skipped where
neither is (the main lane without the django extra).

Django's test machinery is pytest-django's: the suite is pytest throughout
(its fixtures, tmp paths and process helpers serve these tests too), and
pytest-django brings Django's test databases and transaction handling
(``django_db``, ``transaction=True``). Settings come from
``tqproject.settings`` through ``settings.configure()``, not
DJANGO_SETTINGS_MODULE: that would also set the process's TZ for every other
test of the run. Workers run as real subprocesses (``python -m django
task_queue_worker``) with the same settings module.

With TASK_QUEUE_TEST_BACKEND=postgres the ``default`` alias's queue is a
fresh schema on the test server (TQ_DJANGO_QUEUE_URL, made here once per
run, dropped at exit; the workers inherit it with the environment); tests of
the shared SQLite file are marked ``sqlite_only``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("django")
pytest.importorskip("pytest_django")
try:
    import task_queue.contrib.django.compat  # noqa: F401
except ImportError:
    pytest.skip(
        "no Django Tasks framework: Django 6 (Python 3.12+) or Django 5.2 with django-tasks",
        allow_module_level=True,
    )

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if "TQ_DJANGO_DIR" not in os.environ:
    _dir = tempfile.mkdtemp(prefix="tq-django-")
    os.environ["TQ_DJANGO_DIR"] = _dir
    atexit.register(shutil.rmtree, _dir, True)

if os.environ.get("TASK_QUEUE_TEST_BACKEND") == "postgres" and (
    "TQ_DJANGO_QUEUE_URL" not in os.environ
):
    from support.postgres import NO_SERVER, fresh_queue_uri

    _dsn = os.environ.get("TASK_QUEUE_TEST_PG_DSN")
    if not _dsn:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {NO_SERVER}", pytrace=False)
        pytest.skip(NO_SERVER, allow_module_level=True)
    _url, _drop = fresh_queue_uri(_dsn, "dj")
    os.environ["TQ_DJANGO_QUEUE_URL"] = _url

    @atexit.register
    def _drop_queue_schema() -> None:
        from task_queue.contrib.django.queues import close_all

        close_all()  # the test process's pool and listener, before the DROP
        _drop()


if not settings.configured:
    import tqproject.settings as project

    settings.configure(**{name: getattr(project, name) for name in dir(project) if name.isupper()})
    django.setup()


@pytest.fixture
def signals_log() -> Iterator[Path]:
    """The file the project's signal receivers append to, empty at the start."""
    path = Path(settings.SIGNALS_LOG)
    path.unlink(missing_ok=True)
    yield path


@pytest.fixture
def out_file(tmp_path: Path) -> Path:
    """A file tasks append to (the order they ran in)."""
    return tmp_path / "ran.txt"


WorkerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start ``manage.py task_queue_worker ARGS`` as a real process; each is
    killed (if still running) after the test, its output printed on failure."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(started)}.out"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]),
            "TQ_DJANGO_WORKER": "1",
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "task_queue_worker",
                 "--settings", "tqproject.settings", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        started.append((proc, log))
        return proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        print(f"--- worker {proc.pid} rc={proc.returncode} ---\n{log.read_text()[-4000:]}")
