"""The ``nbflow`` command line: ``nbflow run``, ``nbflow export``.

The cli layer: it may import everything but the widgets. :mod:`.main` parses
the command and dispatches; :mod:`.options` turns options into parameters and
an executor; :mod:`.run_file` runs the flows of a Python file and
:mod:`.run_notebook` a notebook's flow with no Jupyter server, each through
:mod:`.run_flow` (one flow with terminal progress, then its summary), whose
text view is :mod:`.progress`.
"""

from __future__ import annotations

from nbflow.cli.main import build_parser, main
from nbflow.cli.run_file import load_flows

__all__ = ["build_parser", "load_flows", "main"]
