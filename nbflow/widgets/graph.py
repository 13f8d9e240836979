"""The picture of a flow's graph: a layered layout and its SVG, coloured by state.

The layout is computed once per run: the topological generations are the
layers, drawn as columns left to right, and each column is ordered by the mean
row of its upstream tasks to reduce crossings; each redraw only recolours it. The SVG needs no graphviz program and no script.

CSS hooks (stable, used by browser tests): the ``<svg>`` has class
``nbflow-graph``; each task is ``<g class="nbflow-node nbflow-state-<state>"
data-task="<label>">`` (``state_class`` spelling, e.g. ``nbflow-state-failed``);
each edge is a ``<path class="nbflow-edge">``.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from nbflow.engine.run_state import (
    TaskSnapshot,
    shown_edges,
    shown_tasks,
    state_class,
    task_labels,
)

if TYPE_CHECKING:
    from nbflow.core.flow import Flow
    from nbflow.core.task import Task

__all__ = [
    "MAX_NODES",
    "GraphLayout",
    "describe_graph",
    "flow_layout",
    "layout_graph",
    "render_svg",
]

#: Flows with more tasks than this get no picture (it would not be readable).
MAX_NODES = 400
#: Tasks named in the graph's words (:func:`describe_graph`), at most.
_DESCRIBED = 40
_COL, _ROW, _NODE_W, _NODE_H, _PAD = 190, 44, 150, 28, 12


@dataclasses.dataclass(frozen=True)
class GraphLayout:
    """Where each task is drawn: ``positions[label] = (x, y)`` in pixels (centre)."""

    positions: dict[str, tuple[float, float]]
    edges: tuple[tuple[str, str], ...]
    width: float
    height: float


def layout_graph(
    tasks: Sequence[Task], edges: Iterable[tuple[Task, Task]]
) -> GraphLayout:
    """Lay ``tasks`` out in layers, each after its upstream tasks, left to right.

    Parameters
    ----------
    tasks : sequence of Task
        In run order (labels are :func:`~nbflow.engine.run_state.task_labels`).
    edges : iterable of (upstream, downstream) pairs

    Returns
    -------
    GraphLayout

    Examples
    --------
    >>> from nbflow import Task
    >>> a, b = Task(name="a"), Task(name="b")
    >>> layout = layout_graph([a, b], [(a, b)])
    >>> layout.positions["a"][0] < layout.positions["b"][0]
    True

    """
    labels = dict(zip(tasks, task_labels(tasks)))
    pairs = sorted(
        {(labels[u], labels[d]) for u, d in edges if u in labels and d in labels}
    )
    upstream: dict[str, list[str]] = {name: [] for name in labels.values()}
    for up, down in pairs:
        upstream[down].append(up)
    order = _order_layers(upstream, _generations(upstream), list(labels.values()))
    return _to_pixels(order, tuple(pairs))


def _generations(upstream: dict[str, list[str]]) -> list[list[str]]:
    """The layers: the tasks with no upstream, then those whose upstream tasks
    are all in earlier layers, and so on (networkx's topological generations,
    without importing networkx on the way to the first picture).
    """
    waiting = {name: len(ups) for name, ups in upstream.items()}
    downstream: dict[str, list[str]] = {name: [] for name in upstream}
    for name, ups in upstream.items():
        for up in ups:
            downstream[up].append(name)
    layer = [name for name, n in waiting.items() if n == 0]
    layers = []
    while layer:
        layers.append(layer)
        following = []
        for name in layer:
            for down in downstream[name]:
                waiting[down] -= 1
                if waiting[down] == 0:
                    following.append(down)
        layer = following
    return layers


def _order_layers(
    upstream: dict[str, list[str]], layers: list[list[str]], rank: list[str]
) -> list[list[str]]:
    """Order each layer by the mean position of its upstream nodes (barycentre)."""
    index = {name: i for i, name in enumerate(rank)}
    placed: dict[str, float] = {}
    result = []
    for layer in layers:

        def key(name: str) -> tuple[float, int]:
            ups = [placed[u] for u in upstream[name] if u in placed]
            return (sum(ups) / len(ups) if ups else -1.0, index[name])

        layer = sorted(layer, key=key)
        placed.update((name, float(i)) for i, name in enumerate(layer))
        result.append(layer)
    return result


def _to_pixels(
    layers: list[list[str]], edges: tuple[tuple[str, str], ...]
) -> GraphLayout:
    """Put layer ``i`` in column ``i``, each column centred vertically."""
    if not layers:
        return GraphLayout({}, edges, 0.0, 0.0)
    tallest = max(len(layer) for layer in layers)
    positions = {}
    for column, layer in enumerate(layers):
        offset = (tallest - len(layer)) * _ROW / 2
        for row, name in enumerate(layer):
            positions[name] = (
                _PAD + _NODE_W / 2 + column * _COL,
                _PAD + _NODE_H / 2 + offset + row * _ROW,
            )
    width = 2 * _PAD + _NODE_W + (len(layers) - 1) * _COL
    height = 2 * _PAD + _NODE_H + (tallest - 1) * _ROW
    return GraphLayout(positions, edges, float(width), float(height))


def flow_layout(flow: Flow, tasks: Sequence[Task] | None = None) -> GraphLayout:
    """The layout of ``flow`` (its tasks in run order unless ``tasks`` is given)."""
    order = shown_tasks(tasks if tasks is not None else flow.sorted_tasks())
    return layout_graph(order, shown_edges(flow.edges))


def render_svg(layout: GraphLayout, tasks: Sequence[TaskSnapshot]) -> str:
    """The SVG of ``layout`` with each node coloured by its task's state.

    Parameters
    ----------
    layout : GraphLayout
    tasks : sequence of TaskSnapshot
        Their ``name`` is the node's label; nodes without one are Pending.

    Returns
    -------
    str
        An ``<svg class="nbflow-graph">`` element, or a short note for flows
        of more than ``MAX_NODES`` tasks.

    """
    if len(layout.positions) > MAX_NODES:
        return (
            f'<p class="nbflow-graph-note">{len(layout.positions)} tasks: '
            "too many to draw.</p>"
        )
    by_name = {t.name: t for t in tasks}
    parts = [
        f'<svg class="nbflow-graph" xmlns="http://www.w3.org/2000/svg" '
        f'width="{layout.width:.0f}" height="{layout.height:.0f}" '
        f'viewBox="0 0 {layout.width:.0f} {layout.height:.0f}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><marker id="nbflow-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0L10,5L0,10z" fill="#888"/></marker></defs>',
    ]
    for up, down in layout.edges:
        (x1, y1), (x2, y2) = layout.positions[up], layout.positions[down]
        x1, x2 = x1 + _NODE_W / 2, x2 - _NODE_W / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path class="nbflow-edge" d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} '
            f'{mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" fill="none" stroke="#888" '
            'marker-end="url(#nbflow-arrow)"/>'
        )
    for name, (x, y) in layout.positions.items():
        parts.append(_node(name, x, y, by_name.get(name)))
    parts.append("</svg>")
    return "".join(parts)


def describe_graph(layout: GraphLayout, tasks: Sequence[TaskSnapshot]) -> str:
    """The graph in words, for where its picture is not shown (an image's
    ``alt``): each task, its state and the tasks after it.

    Examples
    --------
    >>> from nbflow import Task
    >>> a, b = Task(name="a"), Task(name="b")
    >>> describe_graph(layout_graph([a, b], [(a, b)]), [])
    'Graph of 2 tasks: a (Pending) → b; b (Pending)'

    """
    by_name = {t.name: t for t in tasks}
    after: dict[str, list[str]] = {}
    for up, down in layout.edges:
        after.setdefault(up, []).append(down)
    parts = []
    for name in list(layout.positions)[:_DESCRIBED]:
        task = by_name.get(name)
        detail = task.state if task is not None else "Pending"
        if task is not None and task.size is not None:
            detail += f" {task.units[0]}/{task.size}"
        downstream = after.get(name)
        parts.append(f"{name} ({detail})" + (" → " + ", ".join(downstream)
                                              if downstream else ""))
    more = len(layout.positions) - len(parts)
    if more > 0:
        parts.append(f"… {more} more")
    return f"Graph of {len(layout.positions)} tasks: " + "; ".join(parts)


def _node(name: str, x: float, y: float, task: TaskSnapshot | None) -> str:
    """One task's ``<g>``: a box in its state's colour, its label and state."""
    state = task.state if task is not None else "Pending"
    color = task.color if task is not None else "#d3d3d3"
    label = name if len(name) <= 20 else name[:19] + "…"
    detail = state
    title = ""
    if task is not None and task.size is not None:
        detail = f"{state} {task.units[0]}/{task.size}"  # children that succeeded
        if task.failed_index is not None:
            title = f"; [{task.failed_index}] failed first: {task.message or ''}"
    text = "#000" if state in ("Pending", "Retrying", "Running") else "#fff"
    fill, stroke = color, 'stroke="#333" stroke-width="0.5"'
    if state == "TriggerFailed":  # did not run: an outline, not the failed task's red
        fill, text = "#fdecea", "#8b1e1e"
        stroke = f'stroke="{color}" stroke-width="1.5" stroke-dasharray="4 2"'
    left, top = x - _NODE_W / 2, y - _NODE_H / 2
    esc = html.escape(name, quote=True)
    return (
        f'<g class="nbflow-node {state_class(state)}" data-task="{esc}" '
        f'data-state="{state}"><title>{esc}: {html.escape(detail + title)}</title>'
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{_NODE_W}" height="{_NODE_H}" '
        f'rx="5" fill="{fill}" {stroke}/>'
        f'<text x="{x:.1f}" y="{y - 2:.1f}" text-anchor="middle" fill="{text}">'
        f"{html.escape(label)}</text>"
        f'<text x="{x:.1f}" y="{y + 10:.1f}" text-anchor="middle" fill="{text}" '
        f'font-size="9">{html.escape(detail)}</text></g>'
    )
