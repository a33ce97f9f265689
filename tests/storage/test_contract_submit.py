"""Storage contract: operations started without waiting (the asyncio seam,
``task_queue.storage.base.submit``). Whether a backend has its own
``submit`` or gets the shared thread pool, each operation answers once,
from any thread, with what the blocking call would have returned or raised,
and commits whether or not anyone still listens."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from support import wait_until
from support.contract import T0, Backend, new_task

from task_queue.errors import QueueClosedError, TaskNotFoundError
from task_queue.storage.base import Outcome, Storage, submit


class Answer:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.done = threading.Event()

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.done.set()

    def result(self) -> Any:
        assert self.done.wait(10), "no answer"
        assert len(self.outcomes) == 1
        return self.outcomes[0]()


@pytest.mark.parametrize("native", [True, False], ids=["own-submit", "thread-pool"])
def test_submitted_operations_answer_like_the_blocking_ones(storage: Storage, native: bool) -> None:
    target: Any = storage if native else _Blocking(storage)
    answers = [Answer() for _ in range(3)]
    for i, answer in enumerate(answers):
        submit(target, "enqueue", ([new_task(T0, name=f"t{i}")], T0), answer)
    ids = [answer.result()[0][0] for answer in answers]
    got = Answer()
    submit(target, "get_many", (ids,), got)
    assert [t.name for t in got.result()] == ["t0", "t1", "t2"]
    counts = Answer()
    submit(target, "counts", (None,), counts)
    assert counts.result() == storage.counts()
    missing = Answer()
    submit(target, "get", (10_000,), missing)
    assert missing.result() is None


def test_an_error_is_raised_by_the_outcome(storage: Storage) -> None:
    answer = Answer()
    orphan = new_task(T0, name="orphan", depends_on=[999_999])
    submit(storage, "enqueue", ([orphan], T0), answer)
    with pytest.raises(TaskNotFoundError):
        answer.result()
    assert storage.counts().get("pending", 0) == 0


def test_a_submitted_write_commits_though_nobody_reads_the_answer(backend: Backend) -> None:
    first = backend.open()
    submit(first, "enqueue", ([new_task(T0, name="fire and forget")], T0), lambda outcome: None)
    second = backend.open()
    # Visible to another storage object once committed: poll with a deadline.
    wait_until(lambda: second.counts().get("pending", 0) == 1)


def test_submit_after_close_refuses_at_once_or_answers_with_the_error(storage: Storage) -> None:
    storage.close()
    answer = Answer()
    try:
        submit(storage, "get", (1,), answer)
    except QueueClosedError:
        return  # refused before starting: never answered (SQLite's own submit)
    with pytest.raises(QueueClosedError):  # the thread pool's: the operation's own error
        answer.result()


class _Blocking:
    """The backend without its own submit: only the blocking operations."""

    def __init__(self, inner: Storage) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "submit":
            raise AttributeError(name)
        return getattr(self._inner, name)
