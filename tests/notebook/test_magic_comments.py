"""A ``# comment`` after a magic's arguments, and the README's quickstart pasted
verbatim into a real kernel (through nbclient)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

IPython = pytest.importorskip("IPython")
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from nbflow.notebook import current_flow, reset_flow  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbflow")
    reset_flow()
    yield shell
    reset_flow()
    shell.run_line_magic("unload_ext", "nbflow")


def test_magic_comment_is_ignored_but_a_hash_inside_a_value_is_kept(ip, capsys):
    ip.run_cell_magic("flowtask", "first   # the first cell", "a = 1")
    ip.run_cell_magic("flowtask", "odd#name --retries 1 #two", "b = a + 1")
    assert [t.name for t in current_flow().ordered_tasks()] == ["first", "odd#name"]
    ip.run_line_magic("flow", "show    # lists the flow")
    assert "Flow 'notebook': 2 tasks" in capsys.readouterr().out
    ip.run_line_magic("flow", "run  # runs it")
    assert ip.user_ns["b"] == 2


def _quickstart_cells() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    section = section.split("The same flow in plain Python", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.slow
def test_readme_quickstart_pasted_verbatim_runs(tmp_path):
    cells = _quickstart_cells()
    assert any(re.search(r"^%flow run\s+#", c, re.M) for c in cells), cells
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "385" in last, nb.cells[-1].outputs
