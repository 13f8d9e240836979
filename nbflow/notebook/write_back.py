"""What a finished notebook run gives the namespace: each cell's outputs, or,
for values left on a Dask cluster over the memory budget, a handle to them.

Notebook layer: no IPython. :func:`write_back` puts the names the succeeded
cells provided into the namespace, in flow order; a value still on a cluster
is written as a :class:`ClusterValue` (its cell's imports are made here
instead). :func:`left_on_cluster` says in one line which stayed there, and the
memory budget (``%flow run --memory-budget``) is read by :func:`parse_bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from nbflow.engine.run_state import format_bytes
from nbflow.engine.state import State, deferred_sizes
from nbflow.errors import MemoryBudgetError
from nbflow.notebook.flow import CellTask
from nbflow.notebook.runtime import CellResult

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.core.task import Task

__all__ = [
    "ClusterValue",
    "MemoryBudgetError",
    "default_memory_budget",
    "left_on_cluster",
    "parse_bytes",
    "write_back",
]


class ClusterValue:
    """A value a cell provided that stayed on the cluster (over the memory
    budget): :meth:`result` brings it home. ``size`` is the size of all the
    values the cell provided, as the scheduler knows it (None if unknown).
    """

    __slots__ = ("name", "size", "_state", "_mapped")

    def __init__(self, name: str, state: State, size: int | None, mapped: bool) -> None:
        self.name = name
        self.size = size
        self._state = state
        self._mapped = mapped

    def result(self) -> Any:
        """Fetch the value from the cluster (once; later calls reuse it).

        Raises
        ------
        ResultNotKeptError
            The cluster is gone (a temporary one shut down), or lost it.

        """
        found = self._state.result
        if self._mapped:
            return [c.value(self.name) for c in found]
        return found.value(self.name)

    def __repr__(self) -> str:
        size = "" if self.size is None else f", {format_bytes(self.size)}"
        return (f"<ClusterValue {self.name!r}{size} on the Dask cluster; "
                f"{self.name}.result() brings it home>")


def write_back(state: State, namespace: MutableMapping[str, Any], flow: Flow) -> list[str]:
    """Put the names provided by the cells that succeeded into ``namespace``.

    Cells are taken in flow order, so the latest provider of a name wins. A
    value still on a cluster is written as a :class:`ClusterValue`. Returns
    the names written.
    """
    written: dict[str, None] = {}
    states: dict[Task, State] = state.result if isinstance(state.result, dict) else {}
    done = [(t, s) for t in flow.ordered_tasks() if isinstance(t, CellTask)
            and (s := states.get(t)) is not None and s.is_successful()]
    sizes = deferred_sizes([s for _, s in done])
    for (task, task_state), size in zip(done, sizes):
        if task_state.is_result_deferred():
            imported = {} if task.map_var is not None else _imports(task.source)
            values: dict[str, Any] = {
                n: imported[n] if n in imported
                else ClusterValue(n, task_state, size, task.map_var is not None)
                for n in task.provides
            }
        elif task.map_var is None:
            result = task_state.result
            # Skipped (or ended by a signal): the cell provided nothing.
            values = result.values if isinstance(result, CellResult) else {}
        else:
            # A skipped child provides None in its place.
            children: list[CellResult | None] = [
                c if isinstance(c, CellResult) else None
                for c in task_state.result or ()]
            values = {n: [None if c is None else c.value(n) for c in children]
                      for n in task.provides
                      if all(c is None or n in c for c in children)}
        namespace.update(values)
        written.update(dict.fromkeys(values))
    return list(written)


def _imports(source: str) -> dict[str, Any]:
    """The modules and names a cell's top-level ``import`` statements bind,
    imported here: a cell whose values stay on a cluster still gives the
    kernel its imports (``np``, not a ``ClusterValue`` of a module).
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom) and not any(
                a.name == "*" for a in node.names):
            try:
                exec(compile(ast.Module([node], []), "<imports>", "exec"), {}, found)
            except Exception:  # noqa: BLE001 - not importable here: left on the cluster
                continue
    return found


def left_on_cluster(namespace: Mapping[str, Any], budget: int) -> str:
    """One line naming the values in ``namespace`` that stayed on a cluster,
    largest first, or "" if none did.
    """
    cells: dict[int, list[ClusterValue]] = {}
    for value in namespace.values():
        if isinstance(value, ClusterValue):
            cells.setdefault(id(value._state), []).append(value)
    if not cells:
        return ""
    groups = sorted(cells.values(), key=lambda g: -(g[0].size or 0))
    names = ", ".join(
        " and ".join(v.name for v in group)
        + ("" if group[0].size is None else f" ({format_bytes(group[0].size)})")
        for group in groups
    )
    return (f"Left on the cluster, over the memory budget of {format_bytes(budget)}: "
            f"{names}; bring one home with {groups[0][0].name}.result(), or raise "
            "the budget (%flow run --memory-budget 8GB).")


def default_memory_budget() -> int:
    """A quarter of the memory this machine has available now."""
    try:
        import psutil  # type: ignore[import-untyped]

        available = int(psutil.virtual_memory().available)
    except ImportError:
        available = _meminfo_available()
    return available // 4


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def parse_bytes(text: str | int) -> int:
    """``"2GB"``, ``"500 MiB"`` or ``1000000`` as a number of bytes (Dask's
    ``parse_bytes``: sizes read as Dask's own options read them).

    Raises
    ------
    MemoryBudgetError
        ``text`` is not a size.

    """
    if isinstance(text, int):
        return text
    from dask.utils import parse_bytes as dask_parse_bytes

    try:  # dask reads "" as one byte: a budget needs a number
        value = (int(dask_parse_bytes(text)) if text.strip()[:1] in tuple("0123456789.")
                 else -1)
    except (ValueError, TypeError, KeyError):
        value = -1
    if value < 0:
        raise MemoryBudgetError(
            f"Memory budget {text!r} is not a size; write it like '2GB', "
            "'500MB' or a number of bytes."
        )
    return value
