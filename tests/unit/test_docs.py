"""Every user-visible name is documented where help() finds it (issue 7:
help(TaskQueue.close) showed a section-divider comment, Worker.__init__
documented none of its options, get_task and TaskContext had no docstring)."""

from __future__ import annotations

import inspect
import pydoc

import pytest

import task_queue

PUBLIC = [getattr(task_queue, name) for name in task_queue.__all__]


def _members(obj: object) -> list[tuple[str, object]]:
    if not inspect.isclass(obj):
        return []
    found: list[tuple[str, object]] = []
    for name, member in inspect.getmembers(obj):
        if name.startswith("_") and name != "__init__":
            continue
        if name in ("__init__",) and member is object.__init__:
            continue
        if inspect.isfunction(member) or isinstance(member, property):
            defined_here = any(name in vars(klass) for klass in obj.__mro__ if klass is not object)
            if defined_here and getattr(member, "__module__", "task_queue").startswith(
                "task_queue"
            ):
                found.append((name, member))
    return found


@pytest.mark.parametrize("obj", PUBLIC, ids=[name for name in task_queue.__all__])
def test_public_names_have_docstrings(obj: object) -> None:
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj):
        assert inspect.getdoc(obj), f"{obj!r} has no docstring"
    for name, member in _members(obj):
        doc = member.__doc__ if isinstance(member, property) else inspect.getdoc(member)
        if name == "__init__" and hasattr(obj, "__dataclass_fields__"):
            continue  # generated: the class docstring and field comments document it
        assert doc, f"{getattr(obj, '__name__', obj)}.{name} has no docstring"


@pytest.mark.parametrize(
    "target",
    [task_queue.TaskQueue.close, task_queue.Worker.start, task_queue.TaskQueue.get_task,
     task_queue.TaskContext, task_queue.Worker],
)  # fmt: skip
def test_help_shows_documentation_not_comments(target: object) -> None:
    text = pydoc.render_doc(target, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "# --" not in text


def test_worker_init_documents_every_option() -> None:
    doc = inspect.getdoc(task_queue.Worker) or ""
    for name in inspect.signature(task_queue.Worker.__init__).parameters:
        if name != "self":
            assert f"{name}:" in doc, f"Worker's docstring does not document {name}"


def test_get_tasks_by_status_documents_the_real_order() -> None:
    doc = inspect.getdoc(task_queue.TaskQueue.get_tasks_by_status) or ""
    assert "most recently finished first" in doc


def test_every_python_block_in_the_readme_compiles() -> None:
    """A README example with a syntax error is the first thing a newcomer trips on."""
    import pathlib
    import re

    readme = pathlib.Path(__file__).parents[2] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for number, block in enumerate(blocks, 1):
        compile(block, f"README.md python block {number}", "exec")
