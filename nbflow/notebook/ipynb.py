"""A notebook file read for ``nbflow run NOTEBOOK`` and ``nbflow export``.

Notebook layer: no IPython, no terminal output. :func:`read_notebook`
reads an ``.ipynb`` file (format 4, what Jupyter writes, as plain JSON: importing
``nbformat`` and its schema validator costs seconds; older formats through
``nbformat``, which converts them) and splits its code cells into
*setup* (ordinary code, run first, in order), the ``%%flowtask`` cells (the
flow) and the ordinary code after the flow's first ``%flow run`` line, which
shows results in a notebook and does not belong to a headless run. Cells are
numbered from 1, counting every cell (markdown too), as they appear. A notebook
that empties its flow (a ``%flow reset`` line) holds several flows, one after
another: :attr:`NotebookParts.resets` says so, and :attr:`NotebookParts.cells`
keeps every code cell, to run it top to bottom as Jupyter does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import TYPE_CHECKING, Any

from nbflow.errors import NbflowError, NotebookFileError
from nbflow.notebook.options import (
    FlowtaskOptions,
    parse_flowtask_line,
    register_flowtask,
    split_flowtask_cell,
)

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.notebook.flow import CellTask

__all__ = [
    "Cell",
    "FlowtaskCell",
    "NotebookParts",
    "is_flow_run",
    "read_notebook",
    "register_cells",
]

#: A ``%flow run`` line (any options); the flow runs once, at the end, instead.
_FLOW_RUN = re.compile(r"^\s*%flow\s+run\b")
#: A top-level ``%flow reset`` line: the notebook starts another flow there.
_FLOW_RESET = re.compile(r"^%flow\s+reset\b", re.MULTILINE)


def is_flow_run(line: str) -> bool:
    """Whether ``line`` is a ``%flow run`` magic."""
    return bool(_FLOW_RUN.match(line))


@dataclasses.dataclass(frozen=True)
class Cell:
    """Ordinary code of one notebook cell."""

    index: int
    source: str
    #: Tagged ``raises-exception`` (Jupyter's tag): its error is expected.
    raises: bool = False

    @property
    def first_line(self) -> str:
        """The first line that is not blank, for messages."""
        return next((s.strip() for s in self.source.splitlines() if s.strip()), "")

    def describe(self, *, capital: bool = False) -> str:
        """``cell 3 ('import math')`` (``Cell 3 ...`` to start a sentence)."""
        return f"{'C' if capital else 'c'}ell {self.index} ({self.first_line!r})"


@dataclasses.dataclass(frozen=True)
class FlowtaskCell(Cell):
    """A ``%%flowtask`` cell: its options and the code under the magic line."""

    options: FlowtaskOptions = FlowtaskOptions()
    body: str = ""


@dataclasses.dataclass(frozen=True)
class NotebookParts:
    """A notebook's setup code, its ``%%flowtask`` cells, and what is left out."""

    path: str
    name: str
    setup: tuple[Cell, ...]
    tasks: tuple[FlowtaskCell, ...]
    #: Cells with ordinary code after the first ``%flow run`` (not run).
    after: tuple[int, ...]
    #: Every code cell, whole, in order (``%%flowtask`` cells too).
    cells: tuple[Cell, ...] = ()
    #: Whether the notebook empties its flow (``%flow reset``) to start another.
    resets: bool = False


def read_notebook(path: str) -> NotebookParts:
    """Read ``path`` and split it into setup code and ``%%flowtask`` cells.

    Setup is every ordinary code cell up to the first line ``%flow run``
    (that cell is cut just before it); the code after it is left out.

    Raises
    ------
    NotebookFileError
        The file does not exist, is not a notebook, has a malformed
        ``%%flowtask`` line, or has no ``%%flowtask`` cell.

    """
    cells = _code_cells(path)
    setup: list[Cell] = []
    tasks: list[FlowtaskCell] = []
    after: list[int] = []
    ran = False
    for index, source, _raises in cells:
        split = split_flowtask_cell(source)
        if split is not None:
            tasks.append(_flowtask(index, source, *split))
            continue
        if ran:
            if source.strip():
                after.append(index)
            continue
        before, ran = _until_flow_run(source)
        if before.strip():
            setup.append(Cell(index, before))
        if ran and before != source and source[len(before) :].strip():
            after.append(index)
    if not tasks:
        raise NotebookFileError(
            f"Notebook {path!r} has no %%flowtask cell, so no flow to run; mark "
            "the cells of the pipeline with %%flowtask on their first line."
        )
    name = os.path.splitext(os.path.basename(path))[0]
    return NotebookParts(
        path, name, tuple(setup), tuple(tasks), tuple(after),
        cells=tuple(Cell(index, source, raises) for index, source, raises in cells),
        resets=any(_FLOW_RESET.search(source) for _, source, _ in cells),
    )


def register_cells(parts: NotebookParts, flow: Flow) -> list[CellTask]:
    """Register the ``%%flowtask`` cells in notebook order as tasks of ``flow``.

    Raises
    ------
    NotebookFileError
        A cell cannot be registered (a syntax error, an unknown ``--after``).

    """
    tasks = []
    for cell in parts.tasks:
        try:
            tasks.append(register_flowtask(cell.body, cell.options, flow=flow))
        except NbflowError as exc:
            raise NotebookFileError(
                f"{cell.describe(capital=True)}: {' '.join(str(exc).split())}"
            ) from None
    return tasks


def _code_cells(path: str) -> list[tuple[int, str, bool]]:
    """``(number, source, tagged raises-exception)`` of each code cell; refuse
    what is not a notebook.
    """
    if not os.path.exists(path):
        raise NotebookFileError(
            f"Notebook {path!r} does not exist; give the path of an .ipynb file."
        )
    if os.path.isdir(path):
        raise NotebookFileError(
            f"{path!r} is a directory; give the path of an .ipynb file."
        )
    try:
        with open(path, encoding="utf-8") as f:
            nb = json.load(f)
        nb = _format_4(nb, path)
        found = [
            (i, _text(c["source"]),
             "raises-exception" in (c.get("metadata") or {}).get("tags", ()))
            for i, c in enumerate(nb["cells"], 1)
            if c["cell_type"] == "code"
        ]
    except NotebookFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the cause, it is no notebook
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        if isinstance(exc, KeyError):
            reason = f"a cell has no {exc.args[0]!r}"
        raise NotebookFileError(
            f"{path!r} is not a Jupyter notebook ({reason}); give an .ipynb file "
            "saved by Jupyter."
        ) from None
    return found


def _format_4(nb: Any, path: str) -> Any:
    """The notebook in format 4; older ones converted by nbformat."""
    if not isinstance(nb, dict):
        raise TypeError(f"its JSON is a {type(nb).__name__}, not an object")
    version = nb.get("nbformat")
    if not isinstance(version, int):
        raise TypeError("it has no 'nbformat' version")
    if version < 4:
        nb = _older_format(path)
    if not isinstance(nb.get("cells"), list):
        raise TypeError("it has no list of 'cells'")
    return nb


def _older_format(path: str) -> Any:
    """Read a notebook older than format 4 with nbformat, which converts it."""
    try:
        import nbformat
    except ModuleNotFoundError:
        raise NotebookFileError(
            f"Reading notebook {path!r}, which is not in format 4, needs "
            "'nbformat'; install it with `pip install jupyter-nbflow`."
        ) from None
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _text(source: object) -> str:
    """A cell's source: a string, or the list of lines a notebook file holds."""
    if isinstance(source, list):
        return "".join(str(line) for line in source)
    if not isinstance(source, str):
        raise TypeError(f"a cell's source is a {type(source).__name__}")
    return source


def _flowtask(index: int, source: str, line: str, body: str) -> FlowtaskCell:
    try:
        options = parse_flowtask_line(line)
    except NbflowError as exc:
        raise NotebookFileError(
            f"Cell {index} ({'%%flowtask ' + line!r}): {str(exc).rstrip('.')}."
        ) from None
    return FlowtaskCell(index, source, options=options, body=body)


def _until_flow_run(source: str) -> tuple[str, bool]:
    """The source up to its first top-level ``%flow run`` line, and if it has one.

    An indented ``%flow run`` (inside an ``if``) stays: the setup shell skips it.
    """
    lines = source.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if is_flow_run(line) and not line[:1].isspace():
            return "".join(lines[:i]), True
    return source, False
