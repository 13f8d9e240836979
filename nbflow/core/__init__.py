"""The model layer: tasks, parameters, flows; standard library only."""

from __future__ import annotations

from nbflow.core.flow import Edge, Flow
from nbflow.core.task import Parameter, Task, task, unmapped

__all__ = ["Edge", "Flow", "Parameter", "Task", "task", "unmapped"]
