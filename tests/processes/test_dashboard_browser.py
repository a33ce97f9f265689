"""The dashboard in a real headless browser (issue 11, section 4).

The real server (``python -m task_queue.dashboard``, its own process, a free
port) and Debian's Chromium driven by Playwright: every page loads without
a script error or a CSP violation, a filter, a task opened, a failed task
retried and seen pending, a queue paused, a hostile task name shown as
text with no script run, a forged POST from another page refused, and the
live refresh showing a new task without a reload. Screenshots go to the
test's tmp dir.

Needs ``TASK_QUEUE_TEST_CHROMIUM`` (the browser binary; .ci/run installs
Debian's ``chromium`` and sets it) and the ``playwright`` package (never
``playwright install``: it would download a browser of its own).
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from task_queue import TaskQueue

pytest.importorskip("jinja2")
CHROMIUM = os.environ.get("TASK_QUEUE_TEST_CHROMIUM")
if not CHROMIUM:
    pytest.skip(
        "TASK_QUEUE_TEST_CHROMIUM is not set (the path of a Chromium binary; .ci/run sets it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")

pytestmark = pytest.mark.slow

HOSTILE = "<script>alert(1)</script>"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


class Dashboard:
    """The server process and the queue file it shows."""

    def __init__(self, db: Path, url: str, proc: subprocess.Popen[str]) -> None:
        self.db = db
        self.url = url
        self.proc = proc

    def queue(self) -> TaskQueue:
        return TaskQueue(self.db)


def _fill(db: Path) -> dict[str, int]:
    with TaskQueue(db) as queue:
        ids = {
            "email": queue.enqueue("Welcome email", "send_email", {"to": "ada@example.com"},
                                   queue_name="emails"),
            "report": queue.enqueue("Nightly report", "report", {"day": "2026-11-30"},
                                    queue_name="reports"),
            "hostile": queue.enqueue(HOSTILE, "send_email", {"html": "<img src=x onerror=a()>"},
                                     queue_name="emails"),
            "failing": queue.enqueue("Charge card", "charge", {"amount": 42}, max_retries=0,
                                     priority="critical", queue_name="billing"),
        }  # fmt: skip
        task = queue.dequeue(queues=["billing"])
        assert task is not None and task.id == ids["failing"]
        try:
            raise ConnectionError("payment provider timed out")
        except ConnectionError as exc:
            queue.fail_task(task, exc)
        done = queue.dequeue(queues=["reports"])
        assert done is not None
        queue.complete_task(done, {"rows": 1200})
    return ids


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    db = tmp_path_factory.mktemp("dashboard") / "queue.db"
    _fill(db)
    yield from _serve(db)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """A dashboard whose filtered pages examine at most 5 tasks (--scan-rows),
    over a rare task behind 12 newer ones."""
    db = tmp_path_factory.mktemp("bounded") / "queue.db"
    with TaskQueue(db) as queue:
        queue.enqueue("The needle", "rare_type")
        queue.enqueue_many([{"name": f"hay {i}", "task_type": "common"} for i in range(12)])
    yield from _serve(db, "--scan-rows", "5")


def _serve(db: Path, *options: str) -> Iterator[Dashboard]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "task_queue.dashboard", "--db", str(db), "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not match:
        proc.kill()
        raise AssertionError(f"the dashboard did not start: {line!r} {proc.communicate()[1]}")
    yield Dashboard(db, match.group(1), proc)
    proc.terminate()
    assert proc.wait(timeout=30) == 0  # SIGTERM: a clean stop


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A fresh page; any dialog (an alert from injected script) or console
    error fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    page.shots = tmp_path  # type: ignore[attr-defined]
    page.refusals_expected = False  # type: ignore[attr-defined]
    yield page
    context.close()
    if page.refusals_expected:  # the browser logs the 403 it was meant to get
        problems = [p for p in problems if "status of 403" not in p]
    assert not problems, problems
    assert not [d for d in dialogs if not d.startswith("confirm")], dialogs


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(page.shots / f"{name}.png"), full_page=True)


def test_every_page_loads(page: Any, dashboard: Dashboard) -> None:
    with dashboard.queue() as queue:
        some = queue.list_tasks().tasks[0].id
    for path, heading in [
        ("/", "Overview"), ("/tasks", "Tasks"), ("/failed", "Failed tasks"),
        ("/schedules", "Schedules"), (f"/tasks/{some}", f"Task {some}"),
    ]:  # fmt: skip
        response = page.goto(dashboard.url + path)
        assert response.status == 200, path
        assert page.locator("h1").inner_text().startswith(heading), path
        shot(page, path.strip("/").replace("/", "-") or "overview")
    page.goto(dashboard.url + "/")
    assert page.locator('[data-status="failed"]').inner_text() == "1"
    assert page.locator("svg.chart").is_visible()


def test_filter_then_open_a_task(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/tasks")
    page.select_option("select[name=status]", "failed")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"status=failed"))
    rows = page.locator("table.tasks tbody tr")
    assert rows.count() == 1
    page.click("table.tasks tbody tr td.name a")
    page.wait_for_url(re.compile(r"/tasks/\d+$"))
    assert "Charge card" in page.locator(".task-name").inner_text()
    assert "payment provider timed out" in page.locator("#error").inner_text()
    assert '"amount": 42' in page.locator("#payload").inner_text()
    shot(page, "failed-task")


def test_search_by_id(page: Any, dashboard: Dashboard) -> None:
    with dashboard.queue() as queue:
        task_id = queue.list_tasks(status="completed").tasks[0].id
    page.goto(dashboard.url + "/")
    page.fill("#search-id", str(task_id))
    page.press("#search-id", "Enter")
    page.wait_for_url(re.compile(rf"/tasks/{task_id}$"))
    assert '"rows": 1200' in page.locator("#result").inner_text()


def test_retry_a_failed_task_and_see_it_pending(page: Any, dashboard: Dashboard) -> None:
    with dashboard.queue() as queue:
        [failed] = queue.list_tasks(status="failed").tasks
    page.goto(dashboard.url + "/failed")
    page.locator("table.tasks tbody tr").filter(has_text="Charge card").locator(
        "button", has_text="Retry"
    ).click()
    page.wait_for_url(re.compile(r"/failed"))
    assert f"Task {failed.id} is pending again." in page.locator(".notice").inner_text()
    assert "notice" not in page.url  # the notice is not kept in the address
    page.goto(f"{dashboard.url}/tasks/{failed.id}")
    assert page.locator("h1 .status").inner_text() == "pending"
    shot(page, "retried")
    with dashboard.queue() as queue:
        assert queue.get_task(failed.id).status == "pending"  # type: ignore[union-attr]


def test_pause_a_queue(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/")
    row = page.locator('tr[data-queue="emails"]')
    row.locator("button", has_text="Pause").click()
    page.wait_for_load_state()
    assert page.locator('tr[data-queue="emails"] .badge.paused').is_visible()
    assert "emails" in page.locator("#paused").inner_text()
    with dashboard.queue() as queue:
        assert "emails" in queue.paused()
    shot(page, "paused")
    page.locator('tr[data-queue="emails"]').locator("button", has_text="Resume").click()
    page.wait_for_load_state()
    with dashboard.queue() as queue:
        assert "emails" not in queue.paused()


def test_a_hostile_task_name_is_shown_as_text(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/tasks?queue=emails")
    cell = page.locator("table.tasks td.name", has_text="<script>")
    assert cell.inner_text() == HOSTILE  # the text itself, not an element
    cell.locator("a").click()
    page.wait_for_url(re.compile(r"/tasks/\d+$"))
    assert page.locator(".task-name").inner_text() == HOSTILE
    assert "<img src=x onerror=a()>" in page.locator("#payload").inner_text()
    assert page.locator("main script, main img").count() == 0
    assert page.evaluate("window.__xss === undefined")
    # The page fixture fails the test if any alert() ran.


def test_a_post_without_the_token_is_refused(page: Any, dashboard: Dashboard) -> None:
    with dashboard.queue() as queue:
        live = queue.enqueue("keep me", "t")
    page.goto(dashboard.url + "/")  # the session cookie is set
    page.refusals_expected = True
    status = page.evaluate(
        """async (url) => {
            const body = new URLSearchParams({next: "/"});
            const response = await fetch(url, {method: "POST", body});
            return response.status;
        }""",
        f"{dashboard.url}/tasks/{live}/cancel",
    )
    assert status == 403
    with dashboard.queue() as queue:
        assert queue.get_task(live).status == "pending"  # type: ignore[union-attr]


def test_a_form_forged_by_another_site_is_refused(page: Any, dashboard: Dashboard) -> None:
    with dashboard.queue() as queue:
        live = queue.enqueue("keep me too", "t")
    attack = (
        f'<form id="f" method="post" action="{dashboard.url}/tasks/{live}/cancel">'
        '<input name="csrf_token" value="guessed"><input name="next" value="/"></form>'
        '<script>document.getElementById("f").submit()</script>'
    ).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page.refusals_expected = True
    try:
        page.goto(dashboard.url + "/")  # an operator with a session...
        with page.expect_response(re.compile(r"/cancel$")) as answer:
            # ...visits another site (another port of the same host: its
            # requests even carry the SameSite=Strict session cookie).
            page.goto(f"http://127.0.0.1:{server.server_port}/")
        assert answer.value.status == 403
    finally:
        server.shutdown()
    with dashboard.queue() as queue:
        assert queue.get_task(live).status == "pending"  # type: ignore[union-attr]


def test_pages_refresh_themselves(page: Any, dashboard: Dashboard) -> None:
    page.goto(dashboard.url + "/tasks?status=pending")
    with dashboard.queue() as queue:
        task_id = queue.enqueue("appeared while you watched", "t")
    link = page.locator(f'table.tasks a[href="/tasks/{task_id}"]').first
    link.wait_for(timeout=10_000)  # the refresh runs every 3 s
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert "updated" in page.locator("#live-state").inner_text()


def test_search_older_tasks_of_a_rare_type(page: Any, bounded: Dashboard) -> None:
    page.goto(bounded.url + "/tasks")
    page.fill("form.filters input[name=type]", "rare_type")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r"type=rare_type"))
    notice = page.locator("#searched")
    assert notice.inner_text() == "No match among tasks #9–#13 (searched 5 tasks)."
    assert page.locator("table.tasks").count() == 0
    shot(page, "searched")
    page.click("text=Search older tasks →")
    page.wait_for_url(re.compile(r"after=9"))
    assert notice.inner_text() == "No match among tasks #4–#8 (searched 5 tasks)."
    page.click("text=Search older tasks →")
    page.wait_for_url(re.compile(r"after=4"))
    rows = page.locator("table.tasks tbody tr")
    assert rows.count() == 1
    assert rows.locator("td.name").inner_text() == "The needle"
    assert page.locator("#searched").count() == 0  # the oldest task was reached
    assert page.locator("a.search-older").count() == 0
    shot(page, "searched-found")
    page.click("text=« newest")
    page.wait_for_url(re.compile(r"^(?!.*after=).*type=rare_type"))
    assert notice.inner_text().startswith("No match among tasks #9–#13")
