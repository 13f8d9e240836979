"""The ``nbflow`` command line: ``nbflow run``, ``nbflow export``.

The cli layer: it may import everything but the widgets. :mod:`.main` parses
the command and dispatches; :mod:`.options` turns options into parameters and
an executor; :mod:`.run_flow` runs one flow with terminal progress and prints
its summary; :mod:`.run_notebook` runs a notebook's flow with no Jupyter server.
"""

from __future__ import annotations

from nbflow.cli.main import build_parser, load_flows, main

__all__ = ["build_parser", "load_flows", "main"]
