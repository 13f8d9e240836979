"""The panel's controls: one ipywidget per ``ExecutorConfig`` field.

Each control is named after its field, carries the CSS class ``nbflow-<field>``
and shows the field's value as text where the value may be empty (optional
numbers, paths, JSON); :func:`from_control` reads it back or says why not. The
kind of control and its placeholder come from the field's
:class:`~nbflow.executors.config.Option`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import ipywidgets as w

from nbflow.errors import ParseError, WholeNumberError
from nbflow.executors._dask_options import read_seconds
from nbflow.executors._schedulers import SCHEDULERS
from nbflow.executors.config import CLUSTER_MODES, OPTIONS, ExecutorConfig

__all__ = ["FIELDS", "ParseError", "from_control", "make_control", "to_control"]

_KIND_LABELS = [("Local", "local"), ("LocalDask", "local-dask"), ("Dask", "dask")]
_INT_FIELDS = tuple(n for n, o in OPTIONS.items() if o.control == "count")
_TEXT_FIELDS = tuple(n for n, o in OPTIONS.items() if o.control == "text")
_SECONDS_FIELDS = tuple(n for n, o in OPTIONS.items() if o.control == "seconds")
FIELDS = tuple(OPTIONS)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ExecutorConfig)}
_STYLE = {"description_width": "190px"}
_WIDE = "480px"  # a width, not a shared Layout: hiding one control would hide all


def to_control(field: str, value: Any) -> Any:
    """A config value as its control shows it."""
    if field in _INT_FIELDS or field in _TEXT_FIELDS:
        return "" if value is None else str(value)
    if field in _SECONDS_FIELDS:
        return "" if value is None else f"{value:g}" if isinstance(value, float) \
            else str(value)
    if field == "cluster_kwargs":
        return json.dumps(value) if value else ""
    return value


def from_control(field: str, raw: Any) -> Any:
    """A control's value as the config field's value; raise ParseError or WholeNumberError."""
    if field in _INT_FIELDS:
        text = raw.strip()
        if not text:
            return _DEFAULTS[field]
        try:
            return int(text)
        except ValueError:
            spec = OPTIONS[field]
            raise WholeNumberError(
                field, text, spec.minimum or 0, spec.default
            ) from None
    if field == "cluster_kwargs":
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ParseError(
                f"cluster_kwargs is not valid JSON ({exc}); write an object such as "
                '{"processes": false}.'
            ) from None
    if field in _TEXT_FIELDS:
        return raw.strip() or None
    if field in _SECONDS_FIELDS:
        return read_seconds(raw)  # the config's check says what is wrong
    return raw


def make_control(field: str) -> w.Widget:
    """The control that edits ``field``, labelled and classed after it."""
    if field == "kind":
        control = w.ToggleButtons(options=_KIND_LABELS)
    elif field == "scheduler":
        control = w.ToggleButtons(options=list(SCHEDULERS))
    elif field == "cluster":
        control = w.ToggleButtons(options=list(CLUSTER_MODES))
    elif field in ("performance_report", "debug"):
        control = w.Checkbox(
            indent=False, layout=w.Layout(width="auto", margin="0 24px 0 0")
        )
    elif field == "cluster_kwargs":
        control = w.Textarea(rows=2, layout=w.Layout(width=_WIDE))
    else:
        # wide enough for the placeholder ("LocalCluster's default"), not cut
        control = w.Text(layout=w.Layout(width=_WIDE if field in _TEXT_FIELDS else "380px"))
    control.description = field
    if not isinstance(control, w.Checkbox):  # a checkbox's label follows the box
        control.style = _STYLE
    if hasattr(control, "placeholder"):
        control.placeholder = OPTIONS[field].placeholder
    if field in ("cluster_class", "cluster_kwargs", "cache_location"):
        # Sent on Enter or leaving the box: a half-typed import path would
        # import whatever module it names so far, half-typed JSON never parses,
        # a half-typed folder would become the cache's.
        control.continuous_update = False
    control.add_class(f"nbflow-{field}")
    return control
