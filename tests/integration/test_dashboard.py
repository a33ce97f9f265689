"""The dashboard's WSGI app, driven in-process with Werkzeug's test client
(issue 11, section 4): every page, filters, keyset pagination, the
actions, CSRF, read-only mode, the auth token, escaping."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jinja2")
pytest.importorskip("werkzeug")

from werkzeug.test import Client, TestResponse

from task_queue import ManualClock, Schedule, TaskQueue, WorkerInfo
from task_queue.dashboard import InsecureBindError, create_app
from task_queue.dashboard.security import AUTH_COOKIE
from task_queue.dashboard.serve import check_bind, is_loopback

HOSTILE = "<script>alert(1)</script>"
NOW = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def queue(db_path: str, clock: ManualClock) -> Iterator[TaskQueue]:
    with TaskQueue(db_path, clock=clock) as q:
        yield q


def client(queue: TaskQueue, **options: Any) -> Client:
    return Client(create_app(queue, **options))


def csrf(c: Client, path: str = "/") -> str:
    page = c.get(path)
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, "no CSRF token on the page"
    return match.group(1)


def post(c: Client, path: str, token: str | None, **form: str) -> TestResponse:
    data = dict(form)
    if token is not None:
        data["csrf_token"] = token
    return c.post(path, data=data)


def fail(queue: TaskQueue, name: str = "f", error: str = "boom", **fields: Any) -> int:
    # The top priority: the dequeue below takes this one, not another pending task.
    task_id = queue.enqueue(
        name, fields.pop("task_type", "t"), priority="critical", max_retries=0, **fields
    )
    task = queue.dequeue(queues=[fields.get("queue_name", "default")])
    assert task is not None and task.id == task_id
    try:
        raise RuntimeError(error)
    except RuntimeError as exc:
        assert queue.fail_task(task, exc)
    return task_id


# -- pages -----------------------------------------------------------------


def test_overview_shows_counts_queues_throughput_backlog_and_workers(
    queue: TaskQueue, clock: ManualClock
) -> None:
    queue.enqueue("a", "t", queue_name="emails")
    queue.enqueue("b", "t", queue_name="emails")
    fail(queue, queue_name="reports")
    queue.pause("reports")
    clock.advance(90)
    queue.report_worker(
        WorkerInfo("w-1", "worker-one", "host-7", 4242, "emails", 4, NOW, NOW + 80, None, 12, 1)
    )
    page = client(queue).get("/")
    assert page.status_code == 200
    html = page.text
    assert re.search(r'data-status="pending">2<', html)
    assert re.search(r'data-status="failed">1<', html)
    assert 'data-queue="emails"' in html and 'data-queue="reports"' in html
    assert re.search(r'id="paused">.*reports', html)
    assert "host-7" in html and "4242" in html and "worker-one" in html
    assert "<svg" in html and "1 failed" in html  # the chart's summary
    assert re.search(r'id="oldest-due">due <time[^>]*>2 min ago</time> \(waiting 2 min\)', html)


def test_every_page_answers_and_a_fragment_is_only_the_content(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t")
    queue.declare_schedules([Schedule("t", every=60, name="minutely")])
    c = client(queue)
    for path in ["/", "/tasks", f"/tasks/{task_id}", "/failed", "/schedules"]:
        page = c.get(path)
        assert page.status_code == 200, path
        assert page.text.startswith("<!doctype html>")
        fragment = c.get(path + "?fragment=1")
        assert fragment.status_code == 200
        assert "<html" not in fragment.text and "<h1>" in fragment.text
    assert "minutely" in c.get("/schedules").text
    assert 'href="/schedules"' in c.get("/").text  # shown in the navigation once there is one


def test_static_files_are_served_with_a_version(queue: TaskQueue) -> None:
    c = client(queue)
    match = re.search(r'href="(/static/dashboard\.css\?v=\w+)"', c.get("/").text)
    assert match
    css = c.get(match.group(1))
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert "immutable" in css.headers["Cache-Control"]
    assert c.get("/static/dashboard.js").status_code == 200
    assert c.get("/static/secrets.py").status_code == 404


def test_task_list_filters_by_status_type_and_queue(queue: TaskQueue) -> None:
    a = queue.enqueue("alpha", "resize", queue_name="images")
    b = queue.enqueue("beta", "email", queue_name="emails")
    c_id = fail(queue, "gamma", task_type="resize", queue_name="images")
    c = client(queue)

    def ids(path: str) -> list[int]:
        page = c.get(path)
        assert page.status_code == 200, page.text
        return [int(i) for i in re.findall(r'<td class="num"><a href="/tasks/(\d+)">', page.text)]

    assert ids("/tasks") == [c_id, b, a]
    assert ids("/tasks?status=pending") == [b, a]
    assert ids("/tasks?type=resize") == [c_id, a]
    assert ids("/tasks?queue=emails") == [b]
    assert ids("/tasks?status=failed&queue=images&type=resize") == [c_id]
    assert ids("/tasks?queue=nowhere") == []  # an unknown queue: nothing read at all
    assert ids("/failed?type=email") == []


def test_bad_filters_are_a_400_page_saying_why(queue: TaskQueue) -> None:
    queue.enqueue("a", "t")
    c = client(queue)
    for path, words in [
        ("/tasks?status=done", "unknown status"),
        ("/tasks?queue=no%20spaces", "queue name"),
        ("/tasks?after=nonsense", "cursor"),
        ("/tasks?id=abc", "not a task id"),
    ]:
        page = c.get(path)
        assert page.status_code == 400, path
        assert words in page.text


def test_pages_follow_the_keyset_cursor_and_cover_every_task_once(queue: TaskQueue) -> None:
    ids = queue.enqueue_many([{"name": f"t{i}", "task_type": "t"} for i in range(120)])
    c = client(queue)
    seen: list[int] = []
    path: str | None = "/tasks?status=pending"
    pages = 0
    while path:
        page = c.get(path)
        seen += [int(i) for i in re.findall(r'<td class="num"><a href="/tasks/(\d+)">', page.text)]
        match = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        path = match.group(1).replace("&amp;", "&") if match else None
        pages += 1
    assert seen == sorted(ids, reverse=True)
    assert pages == 3
    assert "status=pending" in c.get("/tasks?status=pending").text  # filters kept in the links


def listed(page: TestResponse) -> list[int]:
    assert page.status_code == 200, page.text
    return [int(i) for i in re.findall(r'<td class="num"><a href="/tasks/(\d+)">', page.text)]


def link(page: TestResponse, text: str) -> str | None:
    """The address of the link with this text on the page, if any."""
    match = re.search(r'<a href="([^"]+)"[^>]*>' + re.escape(text), page.text)
    return match.group(1).replace("&amp;", "&") if match else None


def searched(page: TestResponse) -> str:
    """The page's "no more matches" notice, as one line of text."""
    match = re.search(r'<p class="searched" id="searched">(.*?)</p>', page.text, re.S)
    assert match, "no notice of a stopped search"
    return " ".join(re.sub(r"<[^>]+>", "", match.group(1)).split())


def test_a_type_filter_stops_at_the_scan_bound_and_searches_older_tasks_on(
    queue: TaskQueue,
) -> None:
    # A rare type among many newer tasks: with a bound of 10 rows a page,
    # the first two pages find nothing, say which tasks they searched, and
    # link on from where they stopped; the third finds the match.
    needle = queue.enqueue("needle", "rare")
    hay = queue.enqueue_many([{"name": f"hay{i}", "task_type": "common"} for i in range(25)])
    c = client(queue, scan_rows=10)
    page = c.get("/tasks?type=rare")
    assert listed(page) == []
    assert searched(page) == f"No match among tasks #{hay[-10]}–#{hay[-1]} (searched 10 tasks)."
    assert "No task matches" not in page.text and link(page, "older »") is None
    older = link(page, "Search older tasks →")
    assert older == f"/tasks?type=rare&after={hay[-10]}"
    page = c.get(older)
    assert listed(page) == []
    assert searched(page) == f"No match among tasks #{hay[-20]}–#{hay[-11]} (searched 10 tasks)."
    page = c.get(link(page, "Search older tasks →") or "")
    assert listed(page) == [needle]
    assert 'class="searched"' not in page.text
    assert link(page, "Search older tasks →") is None and link(page, "older »") is None
    assert listed(client(queue).get("/tasks?type=rare")) == [needle]  # the default bound


def test_a_bounded_page_shows_what_it_found_and_a_full_one_pages_as_before(
    queue: TaskQueue,
) -> None:
    ids = queue.enqueue_many(
        [{"name": f"t{i}", "task_type": "rare" if i % 4 == 0 else "common"} for i in range(40)]
    )
    rare = [i for n, i in enumerate(ids) if n % 4 == 0][::-1]
    c = client(queue, scan_rows=10)
    page = c.get("/tasks?type=rare")  # ids[39] down to ids[30]: two rare ones
    assert listed(page) == rare[:2]
    assert (
        searched(page) == f"No more matches among tasks #{ids[30]}–#{ids[39]} (searched 10 tasks)."
    )
    seen = listed(page)
    path = link(page, "Search older tasks →")
    while path:
        page = c.get(path)
        seen += listed(page)
        path = link(page, "Search older tasks →") or link(page, "older »")
    assert seen == rare
    # A page that fills within the bound links on with "older »", as any page.
    more = queue.enqueue_many([{"name": f"c{i}", "task_type": "common"} for i in range(60)])
    page = client(queue, scan_rows=55).get("/tasks?type=common")
    assert listed(page) == more[::-1][:50]
    assert 'class="searched"' not in page.text
    assert link(page, "older »") == f"/tasks?type=common&after={more[10]}"


def test_finished_tasks_of_a_type_are_searched_in_finish_order(
    queue: TaskQueue, clock: ManualClock
) -> None:
    failed = fail(queue, "needle", task_type="rare")
    queue.enqueue_many([{"name": f"hay{i}", "task_type": "common"} for i in range(12)])
    while (task := queue.dequeue()) is not None:  # completed after the needle failed
        clock.advance(1)
        queue.complete_task(task, None)
    c = client(queue, scan_rows=5)
    page = c.get("/tasks?status=completed&type=common")
    assert len(listed(page)) == 5
    page = c.get("/tasks?status=completed&type=rare")
    assert listed(page) == []
    assert searched(page).startswith("No match among the completed tasks that finished from ")
    assert searched(page).endswith("(searched 5 tasks).")
    pages = 1
    while (older := link(page, "Search older tasks →")) is not None:
        assert listed(page) == []
        page = c.get(older)
        pages += 1
    assert pages == 3 and listed(page) == []  # no completed task of type rare
    # The dead-letter set by type: found at once or by searching on (a
    # backend with an index of failed tasks by type does not need the bound).
    page = c.get("/failed?type=rare")
    while not listed(page) and (older := link(page, "Search older tasks →")):
        page = c.get(older)
    assert listed(page) == [failed]


def test_the_scan_bound_must_be_a_positive_int(queue: TaskQueue) -> None:
    for bad in (0, -5, 2.5, True, "10"):
        with pytest.raises(ValueError, match="scan_rows"):
            create_app(queue, scan_rows=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scan"):
        queue.list_tasks(task_type="t", scan=0)


def test_search_by_id_jumps_to_the_task(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t")
    c = client(queue)
    jump = c.get(f"/tasks?id=%23{task_id}")
    assert jump.status_code == 303 and jump.headers["Location"] == f"/tasks/{task_id}"
    assert c.get("/tasks/999999").status_code == 404
    assert "No task 999999" in c.get("/tasks/999999").text


def test_task_detail_shows_everything_about_a_task(queue: TaskQueue, clock: ManualClock) -> None:
    parent = queue.enqueue("parent", "t", {"n": 1}, max_retries=1)
    child = queue.enqueue("child", "t", {"n": 2}, depends_on=[parent])
    task = queue.dequeue()
    assert task is not None
    try:
        raise ValueError("first try failed")
    except ValueError as exc:
        queue.fail_task(task, exc)
    clock.advance(60)
    task = queue.dequeue()
    assert task is not None
    queue.report_progress(task, 3, 4, "almost")
    c = client(queue)
    running = c.get(f"/tasks/{parent}").text
    assert "almost" in running and '<progress max="1" value="0.75">' in running
    queue.complete_task(task, {"answer": 42})
    html = c.get(f"/tasks/{parent}").text
    assert "&#34;n&#34;: 1" in html  # the payload, as escaped JSON text
    assert "&#34;answer&#34;: 42" in html
    assert "first try failed" in html and "Traceback (most recent call last)" in html
    assert "o-retried" in html and "o-completed" in html  # two attempts, in order
    assert "builtins.ValueError" in html
    assert "2026" not in html and "2027-01-15" in html  # times shown in UTC
    child_html = c.get(f"/tasks/{child}").text
    assert f'href="/tasks/{parent}">task {parent}</a>' in child_html
    assert "s-completed" in child_html  # the status of what it depends on


def test_failed_page_lists_the_dead_letter_set(queue: TaskQueue) -> None:
    ids = [fail(queue, f"f{i}", error=f"error number {i}") for i in range(3)]
    queue.enqueue("ok", "t")
    html = client(queue).get("/failed").text
    assert [int(i) for i in re.findall(r'<td class="num"><a href="/tasks/(\d+)">', html)] == ids[
        ::-1
    ]
    assert "error number 2" in html and "3 failed tasks" in html
    assert "Retry all" in html and "Purge" in html


# -- actions ---------------------------------------------------------------


def test_retry_one_failed_task_makes_it_pending(queue: TaskQueue) -> None:
    task_id = fail(queue)
    c = client(queue)
    token = csrf(c, "/failed")
    done = post(c, f"/tasks/{task_id}/retry", token, next="/failed")
    assert done.status_code == 303
    assert done.headers["Location"].startswith("/failed?notice=retried")
    assert queue.get_task(task_id).status == "pending"  # type: ignore[union-attr]
    after = c.get(done.headers["Location"]).text
    assert f"Task {task_id} is pending again." in after


def test_cancel_retry_all_and_purge(queue: TaskQueue, clock: ManualClock) -> None:
    live = queue.enqueue("live", "t")
    xs = [fail(queue, task_type="x") for _ in range(2)]
    y = fail(queue, task_type="y")
    c = client(queue)
    token = csrf(c)
    assert post(c, f"/tasks/{live}/cancel", token).status_code == 303
    assert queue.get_task(live).status == "cancelled"  # type: ignore[union-attr]
    retried = post(c, "/failed/retry", token, type="x", queue="")
    assert "notice=retried_all&count=2" in retried.headers["Location"]
    assert [queue.get_task(i).status for i in xs] == ["pending", "pending"]  # type: ignore[union-attr]
    assert queue.get_task(y).status == "failed"  # type: ignore[union-attr]
    clock.advance(7200)
    assert (
        post(c, "/failed/purge", token, older_than="86400").headers["Location"].endswith("count=0")
    )
    purged = post(c, "/failed/purge", token, older_than="3600")
    assert "notice=purged&count=1" in purged.headers["Location"]
    assert queue.get_task(y) is None
    assert post(c, "/failed/purge", token, older_than="12").status_code == 400


def test_pause_and_resume_a_queue(queue: TaskQueue) -> None:
    queue.enqueue("a", "t", queue_name="emails")
    c = client(queue)
    token = csrf(c)
    assert "/queues/emails/pause" in c.get("/").text
    assert post(c, "/queues/emails/pause", token, next="/").status_code == 303
    assert queue.paused() == {"emails"}
    html = c.get("/?notice=paused").text
    assert "/queues/emails/resume" in html and "Queue paused" in html
    assert post(c, "/queues/emails/resume", token).status_code == 303
    assert queue.paused() == frozenset()
    assert post(c, "/queues/bad%20name/pause", token).status_code == 400


def test_an_action_returns_only_inside_the_app(queue: TaskQueue) -> None:
    task_id = queue.enqueue("a", "t")
    c = client(queue)
    token = csrf(c)
    for evil in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]:
        done = post(c, f"/tasks/{task_id}/cancel", token, next=evil)
        assert done.headers["Location"].startswith("/?notice="), evil


# -- CSRF, read-only, auth ---------------------------------------------------


def test_a_post_without_a_valid_csrf_token_is_refused(queue: TaskQueue) -> None:
    task_id = fail(queue)
    c = client(queue)
    token = csrf(c)
    assert post(c, f"/tasks/{task_id}/retry", None).status_code == 403
    assert post(c, f"/tasks/{task_id}/retry", "0" * 64).status_code == 403
    other = client(queue)  # another session's token is no good here
    assert post(other, f"/tasks/{task_id}/retry", token).status_code == 403
    cross = c.post(
        f"/tasks/{task_id}/retry",
        data={"csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert queue.get_task(task_id).status == "failed"  # type: ignore[union-attr]
    assert post(c, f"/tasks/{task_id}/retry", token).status_code == 303  # the real one works


def test_state_changing_urls_do_not_answer_get(queue: TaskQueue) -> None:
    task_id = fail(queue)
    c = client(queue)
    assert c.get(f"/tasks/{task_id}/retry").status_code == 405
    assert queue.get_task(task_id).status == "failed"  # type: ignore[union-attr]


def test_read_only_serves_no_action_at_all(queue: TaskQueue) -> None:
    task_id = fail(queue)
    queue.enqueue("a", "t", queue_name="emails")
    c = client(queue, read_only=True)
    for path in ["/", "/tasks", f"/tasks/{task_id}", "/failed"]:
        html = c.get(path).text
        assert '<form method="post"' not in html and "csrf_token" not in html, path
    assert "read-only" in c.get("/").text
    token = csrf(client(queue), "/failed")  # even with a token of a writable app
    for path in [f"/tasks/{task_id}/retry", f"/tasks/{task_id}/cancel", "/failed/retry",
                 "/failed/purge", "/queues/emails/pause", "/queues/emails/resume", "/",
                 "/nowhere"]:  # fmt: skip
        refused = post(c, path, token)
        assert refused.status_code == 405, path
        assert refused.headers["Allow"] == "GET, HEAD"
    assert queue.get_task(task_id).status == "failed"  # type: ignore[union-attr]
    assert queue.paused() == frozenset()


def test_the_auth_token_is_required(queue: TaskQueue) -> None:
    c = client(queue, auth_token="s3cret")
    page = c.get("/")
    assert page.status_code == 401 and "?token=" in page.text
    assert page.headers["WWW-Authenticate"].startswith("Bearer")
    assert c.get("/tasks?fragment=1").status_code == 401
    assert c.get("/static/dashboard.css").status_code == 200  # public: CSS and JS only
    assert c.get("/?token=wrong").status_code == 401
    assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    login = c.get("/tasks?status=pending&token=s3cret")
    assert login.status_code == 303 and login.headers["Location"] == "/tasks?status=pending"
    cookie = c.get_cookie(AUTH_COOKIE)
    assert cookie is not None and "s3cret" not in cookie.value and cookie.http_only
    assert cookie.same_site == "Strict"
    assert c.get("/").status_code == 200  # the cookie lets it in from now on
    assert client(queue, auth_token="other").get("/").status_code == 401


def test_the_auth_cookie_survives_a_restart_and_the_token_gates_posts(queue: TaskQueue) -> None:
    task_id = fail(queue)
    c = Client(create_app(queue, auth_token="s3cret", secret_key="k"))
    c.get("/?token=s3cret")
    token = csrf(c)
    c2 = Client(create_app(queue, auth_token="s3cret", secret_key="k"))  # a new process
    c2.set_cookie(AUTH_COOKIE, c.get_cookie(AUTH_COOKIE).value)  # type: ignore[union-attr]
    assert c2.get("/").status_code == 200
    anonymous = Client(create_app(queue, auth_token="s3cret", secret_key="k"))
    assert post(anonymous, f"/tasks/{task_id}/retry", token).status_code == 401
    assert post(c, f"/tasks/{task_id}/retry", token).status_code == 303


def test_security_headers(queue: TaskQueue) -> None:
    page = client(queue).get("/")
    headers = page.headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    session = [v for k, v in headers.items() if k == "Set-Cookie"]
    assert session and "HttpOnly" in session[0] and "SameSite=Strict" in session[0]


# -- escaping ----------------------------------------------------------------


def test_hostile_names_payloads_and_errors_are_shown_as_text(queue: TaskQueue) -> None:
    hostile_id = queue.enqueue(
        HOSTILE, HOSTILE, {"html": "<img src=x onerror=alert(2)>", "q": "\"'&"}
    )
    failed_id = fail(
        queue, name="<b onmouseover=alert(3)>", error="</pre><script>alert(4)</script>",
        task_type='"><svg onload=alert(5)>',
    )  # fmt: skip
    c = client(queue)
    pages = [
        "/", "/tasks", f"/tasks/{hostile_id}", f"/tasks/{failed_id}", "/failed",
        "/tasks?type=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/tasks?status=failed",
    ]  # fmt: skip
    for path in pages:
        html = c.get(path).text
        for raw in ("<script>alert", "<img src=x", "<b onmouseover", "<svg onload"):
            assert raw not in html, (path, raw)
    detail = c.get(f"/tasks/{hostile_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=alert(2)&gt;" in detail
    failed = c.get(f"/tasks/{failed_id}").text
    assert "&lt;/pre&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in failed
    listed = c.get("/tasks?type=%3Cscript%3Ealert(1)%3C%2Fscript%3E").text
    assert 'value="&lt;script&gt;alert(1)&lt;/script&gt;"' in listed  # the filter box too


def test_no_template_marks_anything_safe() -> None:
    templates = Path(__file__).parents[2] / "task_queue" / "dashboard" / "templates"
    for template in templates.glob("*.html"):
        text = template.read_text()
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, template


# -- mounting ----------------------------------------------------------------


def test_a_prefix_when_the_server_does_not_set_script_name(queue: TaskQueue) -> None:
    task_id = fail(queue)
    c = client(queue, prefix="/ops/queue")
    html = c.get("/ops/queue/failed").text
    assert f'href="/ops/queue/tasks/{task_id}"' in html
    assert 'href="/ops/queue/static/dashboard.css' in html
    token = csrf(c, "/ops/queue/failed")
    done = post(c, f"/ops/queue/tasks/{task_id}/retry", token, next="/failed")
    assert done.headers["Location"].startswith("/ops/queue/failed?")
    session = c.get_cookie("task_queue_dashboard_session", path="/ops/queue/")
    assert session is not None


def test_mounted_in_flask_with_dispatcher_middleware(db_path: str) -> None:
    pytest.importorskip("flask")
    example = Path(__file__).parents[2] / "examples" / "dashboard_in_flask.py"
    namespace: dict[str, Any] = {"__name__": "dashboard_in_flask"}
    exec(compile(example.read_text(), str(example), "exec"), namespace)
    app = namespace["create_app"](db_path)
    try:
        queue = app.extensions["task_queue"]
        task_id = queue.enqueue("from flask", "t")
        c = app.test_client()
        assert c.get("/").status_code == 200  # the Flask app's own page
        page = c.get("/dashboard/tasks")
        assert page.status_code == 200 and "from flask" in page.text
        assert f'href="/dashboard/tasks/{task_id}"' in page.text
    finally:
        app.extensions["task_queue_close"]()


def test_create_app_from_a_path_owns_its_queue(db_path: str) -> None:
    TaskQueue(db_path).close()
    app = create_app(db_path)
    assert Client(app).get("/").status_code == 200
    app.close()
    with pytest.raises(Exception, match="closed"):
        app.queue.get_task(1)


# -- serving -----------------------------------------------------------------


def test_only_loopback_without_a_token() -> None:
    for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]:
        assert is_loopback(host), host
        check_bind(host, None, False)
    for host in ["0.0.0.0", "::", "192.168.1.5", "example.com", ""]:
        assert not is_loopback(host), host
        with pytest.raises(InsecureBindError, match="auth token"):
            check_bind(host, None, False)
        check_bind(host, "token", False)
        check_bind(host, None, True)


def test_the_command_refuses_an_open_address_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    TaskQueue(db).close()
    cmd = [sys.executable, "-m", "task_queue.dashboard", "--db", str(db)]
    refused = subprocess.run([*cmd, "--host", "0.0.0.0"], capture_output=True, text=True)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "auth token" in refused.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "task_queue.dashboard", "--db", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "no task queue at" in missing.stderr
    cli = subprocess.run(
        [sys.executable, "-m", "task_queue", "--db", str(db), "dashboard", "--host", "::"],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 2 and "auth token" in cli.stderr
    bound = subprocess.run([*cmd, "--scan-rows", "0"], capture_output=True, text=True)
    assert bound.returncode == 2 and "--scan-rows must be at least 1" in bound.stderr
