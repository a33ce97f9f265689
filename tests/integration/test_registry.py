"""Handler registries: the seed API's TASK_HANDLERS[...] = fn, @handler, explicit registries."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from support import wait_until

from task_queue import (
    TASK_HANDLERS,
    HandlerRegistry,
    RetryPolicy,
    TaskQueue,
    TaskStatus,
    Worker,
    handler,
)


@pytest.fixture
def clean_default_registry() -> Iterator[None]:
    """Tests that touch the process-wide TASK_HANDLERS put it back as it was."""
    saved = dict(TASK_HANDLERS)
    saved_options = {k: TASK_HANDLERS.options(k) for k in saved}
    yield
    for key in list(TASK_HANDLERS):
        del TASK_HANDLERS[key]
    for key, fn in saved.items():
        options = saved_options[key]
        TASK_HANDLERS.register(
            key,
            fn,
            max_retries=options.max_retries,
            timeout=options.timeout,
            retry_policy=options.retry_policy,
        )


def custom_handler(payload: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "data": payload["n"] * 2}


def test_seed_md_assignment_into_task_handlers(clean_default_registry: None) -> None:
    assert isinstance(TASK_HANDLERS, MutableMapping)
    TASK_HANDLERS["custom_task"] = custom_handler
    assert TASK_HANDLERS["custom_task"] is custom_handler
    assert "custom_task" in TASK_HANDLERS
    assert TASK_HANDLERS.options("custom_task").max_retries is None
    del TASK_HANDLERS["custom_task"]
    assert "custom_task" not in TASK_HANDLERS


def test_default_worker_runs_handlers_from_task_handlers(
    clean_default_registry: None, db_path: str
) -> None:
    TASK_HANDLERS["custom_task"] = custom_handler
    with TaskQueue(db_path) as q:
        task_id = q.enqueue("custom", "custom_task", {"n": 21})
        with Worker(q, concurrency=1):
            done = wait_until(
                lambda: (
                    (t := q.get_task(task_id)) is not None
                    and t.status is TaskStatus.COMPLETED
                    and t
                )
            )
        assert done.result == {"success": True, "data": 42}


def test_handler_decorator_registers_with_options(clean_default_registry: None) -> None:
    policy = RetryPolicy(base=0.5)

    @handler("decorated", max_retries=7, timeout=2.5, retry_policy=policy)
    def decorated(payload: Any) -> str:
        return "ok"

    assert decorated(None) == "ok"  # the decorator returns the function itself
    assert TASK_HANDLERS["decorated"] is decorated
    options = TASK_HANDLERS.options("decorated")
    assert (options.max_retries, options.timeout, options.retry_policy) == (7, 2.5, policy)
    # Plain assignment later replaces the function, options stay until deleted.
    TASK_HANDLERS["decorated"] = custom_handler
    del TASK_HANDLERS["decorated"]
    assert TASK_HANDLERS.options("decorated").max_retries is None


def test_explicit_registries_are_independent(registry: HandlerRegistry) -> None:
    other = HandlerRegistry()

    @registry.handler("email", max_retries=1)
    def send(payload: Any) -> None:
        return None

    other.register("report", custom_handler, timeout=10)
    assert list(registry) == ["email"] and len(registry) == 1
    assert list(other) == ["report"]
    assert "email" not in TASK_HANDLERS
    assert registry.options("email").max_retries == 1
    assert other.options("report").timeout == 10
    assert registry.options("unknown").max_retries is None
    with pytest.raises(KeyError):
        registry["report"]


def test_worker_uses_an_explicit_registry_and_its_max_retries(
    registry: HandlerRegistry, db_path: str
) -> None:
    calls: list[int] = []

    @registry.handler("flaky", max_retries=0)
    def flaky(payload: Any) -> None:
        calls.append(1)
        raise RuntimeError("always")

    with TaskQueue(db_path) as q:
        task_id = q.enqueue("flaky", "flaky", max_retries=5)
        with Worker(q, handlers=registry, concurrency=1):
            failed = wait_until(
                lambda: (
                    (t := q.get_task(task_id)) is not None and t.status is TaskStatus.FAILED and t
                )
            )
    # The handler's max_retries=0 overrides the task's 5: one attempt only.
    assert calls == [1]
    assert failed.error_message is not None and "always" in failed.error_message


def test_worker_accepts_a_plain_dict_of_handlers(db_path: str) -> None:
    with TaskQueue(db_path) as q:
        task_id = q.enqueue("d", "double", {"n": 4})
        with Worker(q, handlers={"double": custom_handler}, concurrency=1) as worker:
            assert isinstance(worker.handlers, HandlerRegistry)
            wait_until(lambda: q.get_task(task_id).status is TaskStatus.COMPLETED)  # type: ignore[union-attr]


@pytest.mark.parametrize("not_callable", [None, 42, "custom_handler", {"fn": 1}])
def test_non_callable_handlers_are_rejected(registry: HandlerRegistry, not_callable: Any) -> None:
    with pytest.raises(TypeError, match="not callable"):
        registry["x"] = not_callable
    with pytest.raises(TypeError, match="not callable"):
        registry.register("x", not_callable)
    with pytest.raises(TypeError):
        TASK_HANDLERS["x"] = not_callable
    assert "x" not in registry and "x" not in TASK_HANDLERS


@pytest.mark.parametrize("task_type", ["", None, 5])
def test_bad_task_types_are_rejected(registry: HandlerRegistry, task_type: Any) -> None:
    with pytest.raises(ValueError, match="task_type"):
        registry[task_type] = custom_handler
    assert len(registry) == 0


def test_bad_handler_options_are_rejected(registry: HandlerRegistry) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        registry.register("x", custom_handler, max_retries=-1)
    with pytest.raises(ValueError, match="timeout"):
        registry.handler("x", timeout=0)(custom_handler)
    assert "x" not in registry


def test_merge_keeps_options_limits_and_schedules() -> None:
    """The command's merge of several registries kept only max_retries,
    timeout and retry_policy: rate and concurrency limits and schedules
    were silently dropped."""
    from task_queue.periodic import Schedule

    a, b = HandlerRegistry(), HandlerRegistry()

    @a.periodic(every=60)
    @a.handler("api", rate_limit="5/s", concurrency_limit=2, max_retries=1)
    def api(payload: object) -> None: ...

    @b.handler("other")
    def other(payload: object) -> None: ...

    merged = HandlerRegistry()
    merged.merge(a)
    merged.merge(b)
    merged.merge(a)  # the same handlers again: nothing changes
    assert set(merged) == {"api", "other"}
    assert merged.options("api") == a.options("api")
    assert merged.options("api").limits is not None
    assert merged.schedules() == [Schedule("api", every=60.0)]

    clash = HandlerRegistry()
    clash.register("api", lambda payload: None)
    with pytest.raises(ValueError, match="different handler"):
        merged.merge(clash)
    assert merged["api"] is api
