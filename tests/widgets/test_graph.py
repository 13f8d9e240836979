"""The flow graph picture: layered layout and SVG coloured by state."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nbflow import Flow, Task, task
from nbflow.engine.run_state import RunState, state_class, task_labels
from nbflow.widgets.graph import MAX_NODES, flow_layout, layout_graph, render_svg

SVG = "{http://www.w3.org/2000/svg}"


@task
def inc(x):
    return x + 1


@task
def fail(x):
    raise RuntimeError("no")


@task
def add(x, y):
    return x + y


def diamond():
    with Flow("diamond") as flow:
        a = inc(1)
        b = fail(a)
        c = inc(a)
        add(b, c)
    return flow


def test_layout_puts_each_task_right_of_its_upstream_tasks():
    flow = diamond()
    layout = flow_layout(flow)
    x = {name: pos[0] for name, pos in layout.positions.items()}
    assert x["inc"] < x["fail"] == x["inc-2"] < x["add"]
    assert set(layout.edges) == {
        ("inc", "fail"),
        ("inc", "inc-2"),
        ("fail", "add"),
        ("inc-2", "add"),
    }
    ys = [pos[1] for pos in layout.positions.values()]
    assert len(set(layout.positions.values())) == 4  # no two nodes overlap
    assert 0 < min(ys) and max(ys) < layout.height


def test_layout_orders_a_layer_by_its_upstream_rows():
    a, b, c, d = (Task(name=n) for n in "abcd")
    # c hangs off b and d off a: each stays level with its upstream task
    layout = layout_graph([a, b, d, c], [(a, d), (b, c)])
    y = {n: p[1] for n, p in layout.positions.items()}
    assert y["a"] == y["d"] and y["b"] == y["c"]


def test_svg_colours_each_node_by_its_state():
    flow = diamond()
    run_state = RunState()
    flow.run(listeners=[run_state])
    snapshot = run_state.snapshot()
    svg = render_svg(flow_layout(flow), snapshot.tasks)
    root = ET.fromstring(svg)
    assert root.get("class") == "nbflow-graph"
    nodes = {g.get("data-task"): g for g in root.iter(f"{SVG}g")}
    assert nodes["fail"].get("class") == "nbflow-node nbflow-state-failed"
    assert nodes["add"].get("class") == "nbflow-node nbflow-state-trigger-failed"
    assert nodes["inc"].get("class") == "nbflow-node nbflow-state-success"
    rect = nodes["fail"].find(f"{SVG}rect")
    assert rect.get("fill") == "#dc3545"
    assert (
        len([p for p in root.iter(f"{SVG}path") if p.get("class") == "nbflow-edge"])
        == 4
    )
    assert "<script" not in svg


def test_svg_before_a_run_is_all_pending_and_escapes_names():
    with Flow("odd") as flow:
        task(name='<b>"x"</b>')(lambda: 1)()
    svg = render_svg(flow_layout(flow), [])
    root = ET.fromstring(svg)  # well-formed despite the name
    (node,) = [g for g in root.iter(f"{SVG}g")]
    assert node.get("data-task") == '<b>"x"</b>'
    assert node.get("class") == "nbflow-node nbflow-state-pending"


def test_huge_flows_get_a_note_not_a_picture():
    tasks = [Task(name="t") for _ in range(MAX_NODES + 1)]
    layout = layout_graph(tasks, [])
    assert "too many to draw" in render_svg(layout, [])


def test_state_classes_and_labels():
    assert state_class("TriggerFailed") == "nbflow-state-trigger-failed"
    assert state_class("Cancelled") == "nbflow-state-cancelled"
    assert task_labels([Task(name="a"), Task(name="a"), Task(name="b")]) == [
        "a",
        "a-2",
        "b",
    ]


def test_layout_does_not_import_networkx():
    # The first `%flow run` of a kernel draws the graph: networkx's import
    # (0.2 s) was most of what that run cost when every cell was reused.
    import subprocess
    import sys

    code = ("import sys\nfrom nbflow import Task\nfrom nbflow.widgets.graph import "
            "layout_graph\na, b = Task(name='a'), Task(name='b')\n"
            "layout_graph([a, b], [(a, b)])\nprint('networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_layers_are_networkx_topological_generations():
    # The layers are computed here (networkx's import, 0.2 s, was most of a
    # first `%flow run` after a restart); networkx is the reference.
    import random

    import networkx as nx

    from nbflow.widgets.graph import _generations

    rng = random.Random(0)
    for _ in range(300):
        names = [f"t{i}" for i in range(rng.randint(1, 30))]
        upstream = {n: [u for u in names[:i] if rng.random() < 0.15]
                    for i, n in enumerate(names)}
        graph = nx.DiGraph()
        graph.add_nodes_from(names)
        graph.add_edges_from((u, d) for d, ups in upstream.items() for u in ups)
        expected = [sorted(g) for g in nx.topological_generations(graph)]
        assert [sorted(g) for g in _generations(upstream)] == expected
