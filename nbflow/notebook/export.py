"""``nbflow export NOTEBOOK.ipynb``: a notebook's flow as a plain Python file.

Notebook layer: no IPython. The cells are registered with the notebook
layer's own :func:`~nbflow.notebook.register_cell` into a fresh flow, so the
file has the same tasks, edges and options as ``nbflow run NOTEBOOK``:

- setup cells become module-level code (IPython-only lines become comments);
- each ``%%flowtask`` cell becomes a ``@task`` function whose arguments are
  the names it reads from other cells or from the setup's variables, and
  which returns the names it provides (one value, or a dict of several);
- ``build_flow(...)`` wires them in ``with Flow(...)``: ``--map`` is ``.map``,
  ``--after`` is ``upstream_tasks=``, ``--retries`` is ``max_retries=``,
  ``--timeout`` is ``timeout=``, ``--trigger NAME`` is ``trigger=triggers.NAME``,
  ``--no-skip-on-upstream-skip`` is ``skip_on_upstream_skip=False``; the
  setup's variables that cells read are :class:`~nbflow.Parameter` (``-P``).
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from collections.abc import Iterable

from nbflow.core.flow import Flow
from nbflow.errors import NotebookFileError
from nbflow.notebook import CellTask, analyze_cell
from nbflow.notebook.flow import cell_inputs
from nbflow.notebook.ipynb import Cell, NotebookParts, register_cells

__all__ = ["export_notebook"]

#: Lines only IPython understands: magics, shell escapes, ``x = !ls``.
_IPYTHON_LINE = re.compile(r"^\s*([%!]|[A-Za-z_][\w, ]*=\s*[%!])")
_CODE = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
)
#: Names IPython defines in a notebook; read as globals, not as parameters.
_IPYTHON = frozenset({"display", "get_ipython", "In", "Out"})
_IMPORTED = ("Flow", "Parameter", "task", "unmapped", "current_flow")
#: Keywords ``Task.__call__`` and ``Task.map`` take for themselves.
_CALL_KEYWORDS = frozenset({"upstream_tasks", "mapped", "task_args", "flow"})


def export_notebook(parts: NotebookParts, filename: str | None = None) -> str:
    """The Python source of a file that builds ``parts``'s flow.

    ``filename`` is the file's name, for its docstring.

    Raises
    ------
    NotebookFileError
        A cell cannot be registered, or a setup cell is not Python.

    """
    flow = Flow(parts.name)
    register_cells(parts, flow)
    setup = [(cell, _python(cell)) for cell in parts.setup]
    return _Writer(parts, flow, setup, filename or f"{parts.name}.py").source()


def _python(cell: Cell) -> str:
    """A setup cell's code as plain Python: IPython-only lines commented out."""
    if _parses(cell.source):
        return cell.source.rstrip()
    lines = cell.source.rstrip().splitlines()
    magic_cell = lines[0].lstrip().startswith("%%")
    out = []
    for line in lines:
        if _IPYTHON_LINE.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            note = "pass  # " if indent else "# "
            out.append(f"{indent}{note}IPython only: {line.strip()}")
        else:
            out.append(line)
    code = "\n".join(out)
    if _parses(code):
        return code
    if magic_cell:  # %%bash, %%writefile ...: not Python at all
        return "\n".join(f"# {line}".rstrip() for line in lines)
    try:
        ast.parse(code)
    except SyntaxError as exc:
        raise NotebookFileError(
            f"Setup {cell.describe()} is not Python ({exc.msg} on line "
            f"{exc.lineno}); fix it before exporting."
        ) from None
    return code  # pragma: no cover - _parses said it does not parse


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _indent(code: str, prefix: str = "    ") -> str:
    """Indent ``code``, but not the lines inside multi-line strings."""
    inside: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass  # the cell parsed with ast; a tokenizer quirk only costs indentation
    lines = code.splitlines()
    return "\n".join(
        line if i in inside or not line.strip() else prefix + line
        for i, line in enumerate(lines, 1)
    )


def _q(text: str) -> str:
    """A double-quoted Python string literal, as ruff formats them."""
    return json.dumps(text, ensure_ascii=False)


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name) or "cell"
    if ident[0].isdigit() or keyword.iskeyword(ident):
        ident = "cell_" + ident
    return ident


class _Names:
    """Hand out Python names that collide with none taken so far."""

    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)

    def new(self, base: str) -> str:
        name, i = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name


class _Writer:
    """Write the exported file for one notebook (see the module docstring)."""

    def __init__(
        self,
        parts: NotebookParts,
        flow: Flow,
        setup: list[tuple[Cell, str]],
        filename: str,
    ) -> None:
        self.parts, self.flow, self.setup = parts, flow, setup
        self.filename = filename
        self.picks_used = False
        self.tasks = [t for t in flow.ordered_tasks() if isinstance(t, CellTask)]
        self.inputs = cell_inputs(flow)
        # A cell registered again under the same name replaced the task's source.
        self.cells = {
            t: c for c in parts.tasks for t in self.tasks if t.source == c.body
        }
        tree = ast.parse("\n\n".join(code for _, code in setup))
        self.setup_names = set(analyze_cell(tree).provides)
        self.kinds = _kinds(tree)
        self.star = analyze_cell(tree).star_import
        self.params, self.passed = self._arguments()
        local = {n for t in self.tasks
                 for n in (*t.reads, *t.analysis.fallbacks, *t.provides)}
        local |= set(self.params) | set(self.passed)
        names = _Names(local | self.setup_names | set(_IMPORTED) | {"build_flow"})
        self.functions = {
            t: names.new(_identifier(t.name) + "_task") for t in self.tasks
        }
        self.pick = names.new("pick")
        # nbflow's own names, imported under another one if the notebook uses them.
        self.api = {n: names.new(n) if n in local | self.setup_names else n
                    for n in ("Flow", "Parameter", "task", "triggers", "unmapped")}
        # build_flow reads no setup name, only these: its locals must not hide them.
        reserved = {*self.api.values(), "flow", self.pick}
        reserved |= set(self.functions.values())
        self.var = {n: names.new(n) if n in reserved else n for n in local}
        self.runs = {
            t: names.new(_identifier(t.name) + "_run") for t in self._handles()
        }

    def _arguments(self) -> tuple[list[str], list[str]]:
        """Namespace names the cells take as arguments: Parameters, and the
        functions or modules a cell rebinds (passed as they are).
        """
        params: dict[str, None] = {}
        passed: dict[str, None] = {}
        for task in self.tasks:
            for name in task.reads:
                if name in self.inputs[task]:
                    continue
                if self.kinds.get(name) == "variable":
                    params[name] = None
                elif name in self.setup_names and name in task.provides:
                    passed[name] = None
                elif name not in self.setup_names | _IPYTHON and not self.star:
                    params[name] = None  # defined nowhere: a required Parameter
            for name in task.analysis.fallbacks:  # a builtin's name, and the like
                if name not in self.inputs[task] and self.kinds.get(name) == "variable":
                    params[name] = None
        return list(params), list(passed)

    def _handles(self) -> list[CellTask]:
        """Tasks referenced as tasks: several or no outputs, or an ``--after``."""
        after = {n for t in self.tasks for n in t.after}
        return [t for t in self.tasks if len(t.provides) != 1 or t.name in after]

    # -- the file ---------------------------------------------------------------

    def source(self) -> str:
        sections = [self._header()]
        for cell, code in self.setup:
            sections.append(
                f"# -- cell {cell.index} (setup) " + "-" * 50 + f"\n\n{code}"
            )
        sections.append("# -- the %%flowtask cells, as tasks " + "-" * 44)
        sections.extend(self._function(t) for t in self.tasks)
        build = self._build()
        if self.picks_used:
            sections.append(
                f'@{self.api["task"]}(name="pick")\ndef {self.pick}(results, name):\n'
                '    """One of the values a cell that provides several returned."""\n'
                "    return results[name]"
            )
        sections.append(build)
        return "\n\n\n".join(s.rstrip() for s in sections) + "\n"

    def _header(self) -> str:
        p = self.parts
        cells = ("cells " if len(p.after) > 1 else "cell ") + ", ".join(
            map(str, p.after)
        )
        left_out = f"\nLeft out: {cells}, after `%flow run`." if p.after else ""
        params = (
            f"\nParameters (-P NAME=VALUE): {', '.join(self.params)}."
            if self.params
            else ""
        )
        imports = ["Flow", "task"]
        if self.params:
            imports.append("Parameter")
        if any(t.map_var for t in self.tasks):
            imports.append("unmapped")
        if any(t.trigger_spec is not None for t in self.tasks):
            imports.append("triggers")
        return (
            f'"""The flow of notebook {p.name}.ipynb, exported by `nbflow export`.\n\n'
            f"Run it with `nbflow run -p {self.filename}` (options choose the executor)."
            f"{params}{left_out}\n"
            '"""\n\n'
            "from nbflow import "
            + ", ".join(n if self.api[n] == n else f"{n} as {self.api[n]}"
                        for n in sorted(imports))
        )

    def _function(self, task: CellTask) -> str:
        cell = self.cells.get(task)
        options = [f"name={_q(task.name)}"]
        if task.max_retries:
            options.append(f"max_retries={task.max_retries}")
            options.append(f"retry_delay={task.retry_delay!r}")
        if task.timeout is not None:
            options.append(f"timeout={task.timeout!r}")
        if task.trigger_spec is not None:
            # Checked by the options parser: a name, or some_*(numbers).
            spec = ast.unparse(ast.parse(task.trigger_spec.strip(), mode="eval"))
            options.append(f"trigger={self.api['triggers']}.{spec}")
        if not task.skip_on_upstream_skip:
            options.append("skip_on_upstream_skip=False")
        args = ", ".join(self._reads(task))
        first = cell.first_line.replace("\\", "/").replace('"', "'") if cell else ""
        where = f"Cell {cell.index}: {first}" if cell else "A cell."
        body = _indent(task.source.rstrip())
        if not ast.parse(task.source).body:
            body += "\n    pass"
        provides = task.provides
        if len(provides) == 1:
            body += f"\n    return {provides[0]}"
        elif provides:
            values = ", ".join(f"{_q(n)}: {n}" for n in provides)
            body += f"\n    return {{{values}}}"
        return (
            f"@{self.api['task']}({', '.join(options)})\n"
            f"def {self.functions[task]}({args}):\n"
            f'    """{where}"""\n{body}'
        )

    def _reads(self, task: CellTask) -> list[str]:
        """The arguments of a cell's function: names from tasks or parameters."""
        from_tasks = self.inputs[task]
        return [
            n
            for n in (*task.reads, *task.analysis.fallbacks)
            if n in from_tasks or n in self.params or n in self.passed
        ]

    def _build(self) -> str:
        args = [*self.params, *self.passed]
        defaults = [n for n in args if n in self.setup_names]
        lines = [
            f"def build_flow({', '.join(self.var[n] for n in defaults)}):",
            '    """Build the notebook\'s flow; parameters default to the setup\'s."""'
            if defaults
            else '    """Build the notebook\'s flow."""',
            f"    with {self.api['Flow']}({_q(self.parts.name)}) as flow:",
        ]
        for name in self.params:
            default = f", default={self.var[name]}" if name in defaults else ""
            lines.append(f"        {self.var[name]} = {self.api['Parameter']}("
                         f"{_q(name)}{default})")
        source = {n: self.var[n] for n in args}  # what holds each name now
        for task in self.tasks:
            call = self._call(task, source, lines)
            if task in self.runs:
                run = self.runs[task]
                lines.append(f"        {run} = {call}")
                several = len(task.provides) > 1
                for name in task.provides:  # "@..." marks a value still to pick
                    mapped = int(task.map_var is not None)
                    source[name] = f"@{run}@{task.name}@{mapped}" if several else run
            elif task.provides:
                lines.append(f"        {self.var[task.provides[0]]} = {call}")
                source[task.provides[0]] = self.var[task.provides[0]]
            else:
                lines.append(f"        {call}")
        lines.append("    return flow")
        end = [
            f"flow = build_flow({', '.join(f'{self.var[n]}={n}' for n in defaults)})"
        ]
        if "current_flow" in self.setup_names:
            end.append(
                "# The setup chose how the notebook flow runs: run this one alike.\n"
                "flow.executor = current_flow().executor\n"
                "flow.terminal_state_handler = current_flow().terminal_state_handler"
            )
        end.append(
            'if __name__ == "__main__":\n'
            "    raise SystemExit(0 if flow.run().is_successful() else 1)"
        )
        return "\n".join(lines) + "\n\n\n" + "\n\n".join(end)

    def _call(
        self,
        task: CellTask,
        source: dict[str, str],
        lines: list[str],
    ) -> str:
        """The call of a cell's task in ``build_flow``; emit the picks it needs."""
        kwargs = []
        reads = self._reads(task)
        # An argument named like a keyword of Task.__call__ goes by position.
        by_position = not _CALL_KEYWORDS.isdisjoint(reads)
        for name in reads:
            held = source[name]
            if held.startswith("@"):
                held = self._pick(held, name, lines)
                source[name] = held
            mapped = task.map_var is not None and name != task.map_var
            value = f"{self.api['unmapped']}({held})" if mapped else held
            kwargs.append(value if by_position else f"{name}={value}")
        if task.after:
            wrap = "unmapped({})" if task.map_var else "{}"  # ordering only
            ups = ", ".join(wrap.format(self._handle(n)) for n in task.after)
            kwargs.append(f"upstream_tasks=[{ups}]")
        method = ".map" if task.map_var else ""
        return f"{self.functions[task]}{method}({', '.join(kwargs)})"

    def _pick(self, held: str, name: str, lines: list[str]) -> str:
        """Emit ``name = pick(run, "name")`` for a cell that returns several values."""
        _, run, task_name, mapped = held.split("@")
        self.picks_used = True
        var = self.var[name]
        named = f"task_args={{{_q('name')}: {_q(f'{task_name}.{name}')}}}"
        if mapped == "1":
            call = f"{self.pick}.map({run}, {self.api['unmapped']}({_q(name)}), {named})"
        else:
            call = f"{self.pick}({run}, {_q(name)}, {named})"
        lines.append(f"        {var} = {call}")
        return var

    def _handle(self, name: str) -> str:
        task = next(t for t in self.tasks if t.name == name)
        return self.runs[task]


def _kinds(tree: ast.Module) -> dict[str, str]:
    """``"code"`` or ``"variable"``: how the setup last bound each name."""
    kinds: dict[str, str] = {}
    for statement in tree.body:
        module = ast.Module(body=[statement], type_ignores=[])
        kind = "code" if isinstance(statement, _CODE) else "variable"
        for name in analyze_cell(module).provides:
            kinds[name] = kind
    return kinds
