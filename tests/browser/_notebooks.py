"""Small notebooks of the browser tests, written next to a copy of ``notebooks/``.

Each is a few quick cells, so a test spends its time on what it checks, not on
the kernel. Markers in the cells (``# READBACK``, ``# RUN``) let the tests find
them in the page.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

__all__ = ["NOTEBOOKS", "write_notebooks"]

_SLOW = 1.0  # seconds each task of the live run waits

NOTEBOOKS: dict[str, list[str]] = {
    # 1: the executor panel, edited in the page, read back in the kernel
    "b-panel.ipynb": [
        "%load_ext nbflow\nimport nbflow.notebook",
        "%flow panel",
        "# READBACK\nprint('EXECUTOR', repr(nbflow.notebook.current_flow().executor))",
    ],
    # 2: a chain of three slowish tasks, watched while the cell runs
    "b-live.ipynb": [
        "%load_ext nbflow\nimport time",
        f"%%flowtask first\ntime.sleep({_SLOW})\na = 1",
        f"%%flowtask second\ntime.sleep({_SLOW})\nb = a + 1",
        f"%%flowtask third\ntime.sleep({_SLOW})\nc = b + 1",
        "# RUN\n%flow run",
    ],
    # 3: a failing task between one that succeeds and one that depends on it
    "b-failed.ipynb": [
        "%load_ext nbflow",
        '%%flowtask readings\nreadings = [12.5, "n/a", 12.9]',
        "%%flowtask average\naverage = sum(readings) / len(readings)",
        '%%flowtask report\nreport = f"{average:.1f}"',
        "# RUN\n%flow run",
    ],
    # 6: a map over a cell's list held at a known point (child 3 waits for a
    # file the test writes), the panel's choice, a failing child: what the live
    # view looks like, then the saved notebook reopened (b-look-nb7: Notebook 7)
    **{f"{name}.ipynb": [
        "%load_ext nbflow\nimport pathlib, time",
        'panel = %flow panel\npanel.set(kind="local")\npanel',
        "%%flowtask load\nxs = list(range(10))",
        "%%flowtask square --map xs\nif xs == 3:\n    deadline = time.time() + 120\n"
        f"    while not pathlib.Path({name + '.release'!r}).exists() "
        "and time.time() < deadline:\n        time.sleep(0.05)\nsq = xs * xs",
        "# RUN\n%flow run",
        "%%flowtask check --map sq\nif sq == 49:\n    raise ValueError(f'bad {sq}')\nok = sq",
        "# FAIL\n%flow run",
    ] for name in ("b-look", "b-look-nb7")},
    # 7: Voila: the panel's code and a live run view with a failed task's
    # traceback (a background run: the view stays live once the page rendered)
    "b-voila.ipynb": [
        "%load_ext nbflow\nfrom nbflow.notebook import current_flow",
        'panel = %flow panel\npanel.set(kind="local-dask")\npanel',
        '%%flowtask readings\nreadings = [12.5, "n/a", 12.9]',
        "%%flowtask average\naverage = sum(readings) / len(readings)",
        "run = %flow run --background",
    ],
    # 5: a background run, cancelled by the view's button
    "b-cancel.ipynb": [
        "%load_ext nbflow\nimport time\nfrom nbflow.executors import LocalDaskExecutor\n"
        "from nbflow.notebook import current_flow\n"
        'current_flow().executor = LocalDaskExecutor(scheduler="threads", '
        "num_workers=2)\nsteps = list(range(40))",
        "%%flowtask step --map steps\ntime.sleep(1)\ndone = steps",
        "# RUN\nrun = %flow run --background",
        "# READBACK\nfinal = run.join(timeout=60)\n"
        'step = next(s for t, s in final.result.items() if t.name == "step")\n'
        # A cancel that lands before the children start leaves no map_states.
        "print('FINAL', final.name, sorted({c.name for c in step.map_states or [step]}))",
    ],
}


def write_notebooks(folder: Path) -> None:
    """Write :data:`NOTEBOOKS` into ``folder`` (no outputs, python3 kernel)."""
    for name, sources in NOTEBOOKS.items():
        nb = new_notebook(
            metadata={
                "kernelspec": {
                    "display_name": "Python 3 (ipykernel)",
                    "language": "python",
                    "name": "python3",
                },
                "language_info": {"name": "python"},
            }
        )
        for i, source in enumerate(sources):
            nb.cells.append(new_code_cell(source, id=f"{Path(name).stem}-{i}"))
        nbformat.write(nb, folder / name)
