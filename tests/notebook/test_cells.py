"""Static analysis of cells: what a cell reads and what it provides (no IPython)."""

from __future__ import annotations

import pytest

from nbflow.errors import NbflowError
from nbflow.notebook.cells import CellSyntaxError, analyze_cell

CASES = [
    # (source, reads, provides)
    ("y = x + 1\nprint(y)", ("x",), ("y",)),
    ("x += 1", ("x",), ("x",)),
    ("x = 1\nx += 1", (), ("x",)),
    ('df["a"] = df["b"] * k', ("df", "k"), ("df",)),
    ("obj.attr = 3", ("obj",), ("obj",)),
    ("obj.a.b[0] += 1", ("obj",), ("obj",)),
    ('del df["a"]', ("df",), ("df",)),
    ("a, (b, *c) = t", ("t",), ("a", "b", "c")),
    ("[p, q] = r = s", ("s",), ("p", "q", "r")),
    ("if (n := len(xs)) > 3:\n    pass", ("xs",), ("n",)),
    ("for i in range(n):\n    total = total + i", ("n", "total"), ("i", "total")),
    ("for k, v in d.items():\n    pass\nelse:\n    z = k", ("d",), ("k", "v", "z")),
    ("with open(p) as f, g() as (h, j):\n    pass", ("p", "g"), ("f", "h", "j")),
    ("try:\n    pass\nexcept E as e:\n    print(e)", ("E",), ()),
    ("try:\n    r = 1\nexcept (A, B):\n    r = 2\nfinally:\n    done = r",
     ("A", "B"), ("r", "done")),
    ("del q", ("q",), ()),
    ("z = 1\ndel z", (), ()),
    ("import os.path, numpy as np\nfrom a.b import c as d, e", (),
     ("os", "np", "d", "e")),
    ("def f(a, b=dflt) -> R:\n    return a + helper(b) + later\nlater = 1",
     ("dflt", "R", "helper"), ("f", "later")),
    ("@deco\ndef f():\n    pass", ("deco",), ("f",)),
    ("async def f(x):\n    await g(x)", ("g",), ("f",)),
    ("class C(Base, metaclass=M):\n    attr = val\n    other = attr\n"
     "    def m(self):\n        return attr2", ("Base", "M", "attr2", "val"), ("C",)),
    ("class C:\n    x = 1\n    def m(self):\n        return x", ("x",), ("C",)),
    ("sq = [i * i for i in xs if i > lim]", ("xs", "lim"), ("sq",)),
    ("m = {k: v for k, v in pairs}", ("pairs",), ("m",)),
    ("s = {a for row in rows for a in row}", ("rows",), ("s",)),
    ("g = (w for w in ws)", ("ws",), ("g",)),
    ("any([(last := v) for v in vs])", ("vs",), ("last",)),
    ("i = 5\nsq = [i for i in range(3)]", (), ("i", "sq")),
    ("def g():\n    global G\n    G = 1\n    return H", ("H",), ("G", "g")),
    ("def g():\n    global G\n    return G", ("G",), ("g",)),
    ("f = lambda u, v=dd: u + w", ("dd", "w"), ("f",)),
    ("def outer():\n    x = 1\n    def inner():\n        return x + yy\n"
     "    return inner", ("yy",), ("outer",)),
    ("def outer():\n    x = 1\n    def inner():\n        nonlocal x\n        x += 1\n"
     "    return inner", (), ("outer",)),
    ("match p:\n    case Point(x=px, y=0) as pt:\n        q = px\n"
     "    case [1, *rest]:\n        pass\n    case {'k': kv, **others}:\n        pass",
     ("p", "Point"), ("px", "pt", "q", "rest", "kv", "others")),
    ("print(__name__, len(l), list(range(3)))", ("l",), ()),
    ("x: int = 5", (), ("x",)),
    ("x: T", ("T",), ()),
    ("while cond:\n    y = y + 1", ("cond", "y"), ("y",)),
    ("result = compute(data)\nresult.sort()", ("compute", "data"), ("result",)),
    ("list = [1]\nn = len(list)", (), ("list", "n")),
]


@pytest.mark.parametrize(("source", "reads", "provides"), CASES,
                         ids=[c[0].splitlines()[0][:40] for c in CASES])
def test_analyze_cell_reads_and_provides(source, reads, provides):
    analysis = analyze_cell(source)
    assert set(analysis.reads) == set(reads)
    assert analysis.provides == provides


def test_analyze_cell_keeps_source_order():
    analysis = analyze_cell("c = b\nb = a\nz = 1\ny = z")
    assert analysis.reads == ("b", "a")
    assert analysis.provides == ("c", "b", "z", "y")


def test_analyze_cell_builtins_are_not_reads():
    analysis = analyze_cell("print(sorted(map(str, range(n))), ValueError, __name__)")
    assert analysis.reads == ("n",)


def test_analyze_cell_star_import_is_flagged():
    analysis = analyze_cell("from os.path import *\ny = join('a', 'b')")
    assert analysis.star_import
    # join may come from the import: from a task or the namespace if there
    assert analysis.reads == ()
    assert analysis.fallbacks == ("join",)


def test_analyze_cell_syntax_error_names_cell_and_line():
    with pytest.raises(CellSyntaxError) as info:
        analyze_cell("x = 1\ny = (2 +\n", "clean")
    assert isinstance(info.value, NbflowError)
    assert isinstance(info.value, SyntaxError)
    message = str(info.value)
    assert "'clean'" in message and "line 2" in message
    assert message.endswith(".")
    assert info.value.line == 2
