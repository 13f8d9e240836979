"""Static analysis of a cell: which names it reads and which it provides.

The notebook layer: standard library only (``ast``); no IPython. A cell's
*reads* are the names it loads from outside before binding them itself
(builtins left out); its *provides* are the names it leaves bound at module
level. Nested functions, lambdas and classes count their free names as reads
of the cell (they would fail when called without them), unless the cell binds
those names anywhere itself. ``x += 1`` and ``df["a"] = 1`` both read and
provide their target's name: the cell changes a value it was given.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses

from nbflow.errors import CellSyntaxError
from nbflow.notebook._scopes import (
    COMPREHENSIONS,
    FUNCTIONS,
    ScopeCollector,
    evaluated_outside,
    scope_needs,
)

__all__ = ["CellAnalysis", "CellSyntaxError", "analyze_cell", "parse_cell"]

_BUILTINS = frozenset(dir(builtins))
#: Names the exec globals of a cell define, so never read from elsewhere.
_PROVIDED_BY_EXEC = frozenset({"__name__", "__builtins__", "__doc__"})


@dataclasses.dataclass(frozen=True)
class CellAnalysis:
    """What a cell reads from outside and what it provides, in source order."""

    reads: tuple[str, ...]
    provides: tuple[str, ...]
    #: True when the cell does ``from module import *`` (its names are unknown).
    star_import: bool = False
    #: Names read that need not come from outside: a builtin's name, a name
    #: bound only in a branch that may not run, a name after ``import *``.
    #: A task above or the namespace gives them when it has them, as in
    #: Jupyter; otherwise the cell's own binding or the builtin is used.
    fallbacks: tuple[str, ...] = ()


def parse_cell(
    source: str, cell: str | None = None, filename: str = "<cell>"
) -> ast.Module:
    """Parse a cell's source; raise :class:`CellSyntaxError` naming the cell."""
    try:
        return ast.parse(source, filename=filename, mode="exec")
    except SyntaxError as exc:
        raise CellSyntaxError(cell, exc) from None


def analyze_cell(source: str | ast.Module, cell: str | None = None) -> CellAnalysis:
    """Return the names a cell reads and provides.

    Parameters
    ----------
    source : str or ast.Module
        The cell's code, or its parsed tree.
    cell : str
        The cell's name, for the error message of a syntax error.

    Returns
    -------
    CellAnalysis

    Raises
    ------
    CellSyntaxError
        If the source does not parse.

    Examples
    --------
    >>> a = analyze_cell("y = x + 1; print(y)")
    >>> a.reads, a.provides
    (('x',), ('y',))

    """
    tree = parse_cell(source, cell) if isinstance(source, str) else source
    walker = _ModuleWalker(_module_bindings(tree))
    for statement in tree.body:
        walker.visit(statement)
    return CellAnalysis(tuple(walker.reads), tuple(walker.provides), walker.star,
                        tuple(walker.fallbacks))


# -- the module scope, in evaluation order -----------------------------------------


def _module_bindings(tree: ast.Module) -> set[str]:
    """Every name the cell binds at module level, anywhere in it."""
    collector = ScopeCollector()
    for statement in tree.body:
        collector.visit(statement)
    bound = set(collector.stores)
    for inner in collector.nested:
        # Not ``inner.module_stores``: a function's ``global`` binds a name only
        # when it is called, and may read the value first (``counter += 1``).
        bound |= inner.outer_stores
    return bound


class _ModuleWalker(ast.NodeVisitor):
    """Walk module-level statements in evaluation order, tracking bindings."""

    def __init__(self, everywhere: set[str]) -> None:
        self.everywhere = everywhere
        self.bound: set[str] = set()
        self.maybe: set[str] = set()  # bound in a branch that may not have run
        self.reads: dict[str, None] = {}
        self.fallbacks: dict[str, None] = {}
        self.provides: dict[str, None] = {}
        self.star = False

    def _read(self, name: str, *, late: bool = False) -> None:
        known = (self.everywhere | self.bound) if late else self.bound
        if name in known or name in self.reads or name in _PROVIDED_BY_EXEC:
            return
        if name in _BUILTINS or self.star or name in self.maybe:
            self.fallbacks[name] = None
            return
        self.reads[name] = None

    def _branches(self, *branches: list[ast.stmt], exhaustive: bool) -> None:
        """Visit alternative blocks; a name is bound after them only if every
        block binds it (and, unless ``exhaustive``, also when none ran).
        """
        before = set(self.bound)
        outcomes = [] if exhaustive else [before]
        for block in branches:
            self.bound = set(before)
            for statement in block:
                self.visit(statement)
            outcomes.append(self.bound)
        self.bound = set.intersection(*outcomes) if outcomes else before
        self.maybe |= set().union(*outcomes) - self.bound

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._branches(node.body, node.orelse, exhaustive=True)

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        self._branches(node.body + node.orelse, exhaustive=False)

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        before = set(self.bound)
        for statement in node.body + node.orelse:
            self.visit(statement)
        after_body = self.bound
        # A handler runs after part of the body: its names may be unbound there.
        self.maybe |= after_body - before
        outcomes = [after_body]
        for handler in node.handlers:
            self.bound = set(before)
            self.visit(handler)
            outcomes.append(self.bound)
        self.bound = set.intersection(*outcomes)
        self.maybe |= set().union(*outcomes) - self.bound
        for statement in node.finalbody:
            self.visit(statement)

    visit_TryStar = visit_Try

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        before = set(self.bound)
        outcomes = [before]  # no case may match
        for case in node.cases:
            self.bound = set(before)
            self.visit(case.pattern)
            if case.guard is not None:
                self.visit(case.guard)
            for statement in case.body:
                self.visit(statement)
            outcomes.append(self.bound)
        self.bound = set.intersection(*outcomes)
        self.maybe |= set().union(*outcomes) - self.bound

    def _bind(self, name: str) -> None:
        self.bound.add(name)
        self.provides[name] = None

    def _unbind(self, name: str) -> None:
        self.bound.discard(name)
        self.provides.pop(name, None)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:  # del x: x must exist, and is gone afterwards
            self._read(node.id)
            self._unbind(node.id)

    def _changed(self, target: ast.AST) -> None:
        """``a.b = ...`` or ``a[i] = ...``: the cell reads and changes ``a``."""
        self.visit(target)
        base = target
        while isinstance(base, (ast.Attribute, ast.Subscript, ast.Starred)):
            base = base.value
        if isinstance(base, ast.Name):
            self._bind(base.id)

    def _assign_target(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            self._changed(target)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._assign_target(element)
        elif isinstance(target, ast.Starred):
            self._assign_target(target.value)
        else:
            self.visit(target)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self._assign_target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self._assign_target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
        self.visit(node.value)
        self._assign_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self._bind(node.target.id)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)):
                self._changed(target)
            else:
                self.visit(target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        before = set(self.bound)
        self._assign_target(node.target)
        for statement in node.body + node.orelse:
            self.visit(statement)
        # The loop may run no time: what it binds may be unbound after it.
        self.maybe |= self.bound - before
        self.bound = before

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._assign_target(item.optional_vars)
        for statement in node.body:
            self.visit(statement)

    visit_AsyncWith = visit_With

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._bind(node.name)
        for statement in node.body:
            self.visit(statement)
        if node.name:  # Python deletes the name when the handler ends.
            self._unbind(node.name)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star = True
            else:
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_Global(self, node: ast.Global) -> None:
        """``global`` at module level changes nothing."""

    def _capture(self, node: ast.AST, name: str | None) -> None:
        self.generic_visit(node)
        if name:
            self._bind(name)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        self._capture(node, node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        self._capture(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        self._capture(node, node.rest)

    def _definition(self, node: ast.AST) -> None:
        for expr in evaluated_outside(node):
            self.visit(expr)
        needs = scope_needs(node)
        # Function bodies run later: a name the cell binds anywhere is not a
        # read. Class bodies and comprehensions run now: the usual order holds.
        late = isinstance(node, FUNCTIONS)
        for name in sorted(needs.free | needs.module):
            self._read(name, late=late)
        for name in sorted(needs.module_stores | needs.outer_stores):
            self._bind(name)
        if not isinstance(node, (ast.Lambda, *COMPREHENSIONS)):
            self._bind(node.name)  # type: ignore[attr-defined]

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition
    visit_Lambda = visit_ListComp = visit_SetComp = _definition
    visit_DictComp = visit_GeneratorExp = _definition
