"""Executors: where a flow's tasks run.

``LocalExecutor`` runs in the calling thread; ``LocalDaskExecutor`` and
``DaskExecutor`` import dask and distributed only when they start.
"""

from __future__ import annotations

from nbflow.executors.base import Executor
from nbflow.executors.dask import DaskExecutor
from nbflow.executors.local import LocalExecutor
from nbflow.executors.local_dask import LocalDaskExecutor

__all__ = ["DaskExecutor", "Executor", "LocalDaskExecutor", "LocalExecutor"]
