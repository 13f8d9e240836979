"""``python -m nbflow``: the ``nbflow`` command line (see :mod:`nbflow.cli`)."""

from __future__ import annotations

from nbflow.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
