"""Put source lines back into tracebacks of functions pickled by value.

cloudpickle (3.x) renames the file of every code object it pickles by value
(functions from ``__main__`` or a notebook) to ``<dynamic-code>``, so a task
that fails in a process pool or on a Dask worker shows no source line. The
driver still has the function and its source: this rewrites such frames there,
on the failure path only.
"""

from __future__ import annotations

import linecache
import re
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["restore_sources"]

_FRAME = re.compile(r'  File "<dynamic-code>", line (\d+), in (\S+)\n')


def _codes(fn: Callable[..., Any]) -> Iterator[types.CodeType]:
    """Code objects reachable from ``fn``: its own, nested ones, and those of
    the functions among its globals (what it may have called).
    """
    seen: set[int] = set()
    roots: list[Any] = [fn]
    # A notebook cell's function carries the namespace values it reads (the
    # helpers defined in ordinary cells) instead of globals.
    scope = getattr(fn, "__globals__", None) or getattr(fn, "namespace", None) or {}
    roots.extend(v for v in scope.values() if isinstance(v, types.FunctionType))
    roots.extend(getattr(v, "fn", None) for v in scope.values()
                 if isinstance(getattr(v, "fn", None), types.FunctionType))
    stack = [f.__code__ for f in roots if isinstance(f, types.FunctionType)]
    while stack:
        code = stack.pop()
        if id(code) in seen:
            continue
        seen.add(id(code))
        yield code
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))


def restore_sources(traceback: str, fn: Callable[..., Any]) -> str:
    """Return ``traceback`` with ``<dynamic-code>`` frames of ``fn`` made readable."""
    if "<dynamic-code>" not in traceback:
        return traceback
    codes = list(_codes(fn))

    def replace(match: re.Match[str]) -> str:
        line, name = int(match.group(1)), match.group(2)
        for code in codes:
            lines = {n for _, _, n in code.co_lines() if n is not None}
            if code.co_name == name and line in lines:
                text = linecache.getline(code.co_filename, line).strip()
                frame = f'  File "{code.co_filename}", line {line}, in {name}\n'
                return frame + (f"    {text}\n" if text else "")
        return match.group(0)

    return _FRAME.sub(replace, traceback)
