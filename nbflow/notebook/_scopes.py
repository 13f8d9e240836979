"""Scopes nested in a cell: what functions, classes and comprehensions need.

Part of the notebook layer's cell analysis (:mod:`nbflow.notebook.cells`);
standard library only. :func:`scope_needs` summarises one nested scope: the
names it takes from the scopes around it, the names it reads or binds at module
level through ``global``, and the names a comprehension's walrus binds outside.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable

__all__ = ["COMPREHENSIONS", "FUNCTIONS", "Needs", "ScopeCollector", "evaluated_outside",
           "scope_needs"]

COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


@dataclasses.dataclass
class Needs:
    """What a nested scope takes from outside and binds at module level."""

    free: set[str] = dataclasses.field(default_factory=set)  # resolved outward
    module: set[str] = dataclasses.field(default_factory=set)  # `global` loads
    module_stores: set[str] = dataclasses.field(default_factory=set)
    outer_stores: set[str] = dataclasses.field(default_factory=set)  # walrus


class ScopeCollector(ast.NodeVisitor):
    """Loads and stores of one scope's body; nested scopes are summarised."""

    def __init__(self, is_class: bool = False) -> None:
        self.loads: set[str] = set()
        self.stores: set[str] = set()
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.nested: list[Needs] = []
        self.is_class = is_class

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loads.add(node.id)
        else:
            self.stores.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.stores.add(node.target.id)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        # ``x += 1`` reads x before it binds it.
        if isinstance(node.target, ast.Name):
            self.loads.add(node.target.id)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.globals.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.nonlocals.update(node.names)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.stores.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stores.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stores.add(node.rest)
        self.generic_visit(node)

    def _definition(self, node: ast.AST) -> None:
        for expr in evaluated_outside(node):
            self.visit(expr)
        self.nested.append(scope_needs(node))
        if not isinstance(node, (ast.Lambda, *COMPREHENSIONS)):
            self.stores.add(node.name)  # type: ignore[attr-defined]

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition
    visit_Lambda = visit_ListComp = visit_SetComp = _definition
    visit_DictComp = visit_GeneratorExp = _definition


def evaluated_outside(node: ast.AST) -> list[ast.AST]:
    """The parts of a definition evaluated in the scope that contains it."""
    if isinstance(node, COMPREHENSIONS):
        return [node.generators[0].iter]
    out: list[ast.AST] = list(getattr(node, "decorator_list", []))
    if isinstance(node, ast.ClassDef):
        return out + node.bases + [k.value for k in node.keywords]
    args = node.args  # type: ignore[attr-defined]
    out += [d for d in args.defaults + args.kw_defaults if d is not None]
    if not isinstance(node, ast.Lambda):
        every = args.posonlyargs + args.args + args.kwonlyargs
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        out += [a.annotation for a in every if a.annotation is not None]
        if node.returns is not None:  # type: ignore[attr-defined]
            out.append(node.returns)  # type: ignore[attr-defined]
    return out


def scope_needs(node: ast.AST) -> Needs:
    """Summarise a function, lambda, class or comprehension scope."""
    collector = ScopeCollector(is_class=isinstance(node, ast.ClassDef))
    params: set[str] = set()
    if isinstance(node, COMPREHENSIONS):
        first, *rest = node.generators
        collector.visit(first.target)
        for cond in first.ifs:
            collector.visit(cond)
        for gen in rest:
            collector.visit(gen)
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for part in parts:
            collector.visit(part)
    elif isinstance(node, ast.ClassDef):
        for statement in node.body:
            collector.visit(statement)
    else:
        args = node.args  # type: ignore[attr-defined]
        every = args.posonlyargs + args.args + args.kwonlyargs
        params = {a.arg for a in every}
        params |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        body = node.body  # type: ignore[attr-defined]
        for statement in body if isinstance(body, list) else [body]:
            collector.visit(statement)
    return _summarise(node, collector, params)


def _summarise(node: ast.AST, c: ScopeCollector, params: set[str]) -> Needs:
    needs = Needs()
    walrus_out = set()
    if isinstance(node, COMPREHENSIONS):
        # A walrus in a comprehension binds in the enclosing scope.
        walrus_out = {n.target.id for n in _own_walrus(node)}
        needs.outer_stores |= walrus_out
    local = (c.stores | params) - c.globals - c.nonlocals - walrus_out
    needs.free = (c.loads - local - c.globals) | (walrus_out & c.loads)
    needs.module = c.loads & c.globals
    needs.module_stores = c.stores & c.globals
    for inner in c.nested:
        # Class bodies do not resolve the names of the scopes inside them.
        visible = set() if c.is_class else local
        needs.free |= inner.free - visible - c.globals
        needs.module |= inner.module | (inner.free & c.globals)
        needs.module_stores |= inner.module_stores
        outer = inner.outer_stores - visible
        needs.module_stores |= outer & c.globals
        if isinstance(node, COMPREHENSIONS):
            needs.outer_stores |= outer
    return needs


def _own_walrus(node: ast.AST) -> Iterable[ast.NamedExpr]:
    """Walrus expressions of a comprehension, its nested comprehensions included."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        sub = stack.pop()
        if isinstance(sub, ast.NamedExpr):
            yield sub
        if not isinstance(sub, (*FUNCTIONS, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(sub))
