"""The engine: states, events and the run loop."""

from __future__ import annotations

__all__: list[str] = []
