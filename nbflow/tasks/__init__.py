"""Tasks nbflow ships, as Prefect 1's ``prefect.tasks``: only control flow."""

from __future__ import annotations

__all__: list[str] = []
