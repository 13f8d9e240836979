"""Cells known by their ids (plain Python, no kernel): a rename replaces the
task in place, a deleted cell takes its task along, one name per cell."""

from __future__ import annotations

import pytest

from nbflow.core.flow import Flow
from nbflow.notebook import (
    DuplicateProviderError,
    RegistrationError,
    forget_cells,
    register_cell,
    run_flow,
)
from nbflow.notebook.flow import check_providers


def _names(flow: Flow) -> list[str]:
    return [t.name for t in flow.ordered_tasks()]


def test_rename_delete_and_one_name_per_cell():
    flow = Flow("notebook")
    register_cell("a = 1", "a", cell_id="A", flow=flow)
    register_cell("b = a + 1", "b", cell_id="B", flow=flow)
    register_cell("a = 2", "first", cell_id="A", flow=flow)  # renamed: same place
    assert _names(flow) == ["first", "b"]
    with pytest.raises(RegistrationError, match="Another cell already registered the task 'b'"):
        register_cell("z = 0", "b", cell_id="Z", flow=flow)
    assert forget_cells(["B"], flow=flow) == ["b"]
    assert _names(flow) == ["first"]


def test_two_providers_fail_naming_both_unless_one_reads_the_other():
    flow = Flow("notebook")
    register_cell("x = 1", "one", flow=flow)
    register_cell("x = x + 1", "two", flow=flow)  # reads it first: a chain, fine
    check_providers(flow)
    register_cell("x = 5", "three", flow=flow)
    with pytest.raises(DuplicateProviderError, match="Cells 'two' and 'three' both provide 'x'"):
        check_providers(flow)


def test_run_flow_leaves_out_cells_seen_below_the_run():
    flow = Flow("notebook")
    for _ in range(2):  # Run All twice
        register_cell("a = 1", "a", cell_id="A", flow=flow)
        first = _names(run_flow("X", flow=flow))
        register_cell("b = a", "b", cell_id="B", flow=flow)
        second = _names(run_flow("Y", flow=flow))
        assert first == ["a"] and second == ["a", "b"]
