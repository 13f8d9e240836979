"""On a Dask cluster the data stays there: the driver holds only what is read.

Real `dask scheduler` / `dask worker` processes (the ``existing_cluster``
fixture) and real temporary clusters; a :class:`~_data.Payload` logs each
process that unpickles it, so "no intermediate reached the driver" is a fact
checked, not a guess.
"""

from __future__ import annotations

import os

import pytest
from _data import (
    MB,
    PeakRSS,
    array_of,
    arrivals,
    double,
    grand_total,
    keys_in_memory,
    make,
    make_all,
    make_cached,
    make_dropped,
    make_skipped,
    total_of,
)

from nbflow import Flow, unmapped
from nbflow.engine.state import Mapped, Success
from nbflow.executors import DaskExecutor
from nbflow.executors.dask import ResultNotKeptError

pytestmark = pytest.mark.slow

#: 8 values of 50 MB made, 8 more doubled: 800 MB on the workers.
N, SIZE_MB = 8, 50
DATA = 2 * N * SIZE_MB * MB


def _map_flow(log: str) -> tuple[Flow, object, object, object]:
    with Flow("big-map") as flow:
        made = make.map(range(N), unmapped(SIZE_MB), unmapped(log))
        doubled = double.map(made)
        summed = total_of.map(doubled)
        grand = grand_total(summed)
    return flow, made, doubled, grand


def _expected() -> float:
    return float(sum(2 * i * SIZE_MB * MB // 8 for i in range(N)))


def test_intermediates_never_reach_the_driver(existing_cluster, tmp_path):
    log = tmp_path / "arrivals"
    flow, made, doubled, grand = _map_flow(str(log))
    executor = DaskExecutor(address=existing_cluster)
    with PeakRSS() as rss:
        state = flow.run(executor=executor)
    assert state.is_successful(), state.message
    assert state.result[grand].result == _expected()
    # No payload was ever unpickled in this process: every value moved
    # between workers (or stayed on one).
    assert os.getpid() not in arrivals(log)
    assert rss.growth < DATA / 8, f"driver grew {rss.growth / MB:.0f} MB"
    assert isinstance(state.result[doubled], Mapped)
    assert state.result[doubled].is_result_deferred()

    # Reading a result brings it home: now (and only now) it arrives here.
    value = state.result[doubled].map_states[3].result
    assert float(value.array[0]) == 6.0
    assert os.getpid() in arrivals(log)
    assert not state.result[doubled].map_states[3].is_result_deferred()


def test_mapping_over_a_big_unmapped_result_splits_it_on_the_workers(
    existing_cluster, tmp_path
):
    log = tmp_path / "arrivals"
    with Flow("split") as flow:
        everything = make_all(N, SIZE_MB, str(log))
        doubled = double.map(everything)
        grand = grand_total(total_of.map(doubled))
    with PeakRSS() as rss:
        state = flow.run(executor=DaskExecutor(address=existing_cluster))
    assert state.is_successful(), state.message
    assert state.result[grand].result == _expected()
    assert len(state.result[doubled].map_states) == N
    assert os.getpid() not in arrivals(log), "the list was fetched to count it"
    assert rss.growth < DATA / 8, f"driver grew {rss.growth / MB:.0f} MB"


def test_mapping_over_a_non_sequence_result_fails_clearly(existing_cluster):
    with Flow("not-a-list") as flow:
        one = grand_total([1.0, 2.0])
        doubled = double.map(one)
    state = flow.run(executor=DaskExecutor(address=existing_cluster))
    assert not state.is_successful()
    message = state.result[doubled].message
    assert message.startswith("Task 'double' cannot map over 'grand_total' (= 3.0)")


def test_results_are_fetched_on_first_read_from_an_existing_cluster(existing_cluster):
    with Flow("lazy") as flow:
        small = array_of(1)
        big = array_of(8)
        both = grand_total([1.0])
        flow.add_edge(small, both)
        flow.add_edge(big, both)
    state = flow.run(executor=DaskExecutor(address=existing_cluster))
    assert state.is_successful(), state.message
    assert not state.result[both].is_result_deferred()  # a reference task
    assert state.result[big].is_result_deferred()
    assert state.result[big].result.nbytes == 8 * MB
    assert not state.result[big].is_result_deferred()
    assert state.result[small].result.nbytes == 1 * MB


def test_return_tasks_and_memory_budget(existing_cluster):
    with Flow("budget") as flow:
        sizes = {mb: array_of(mb) for mb in (1, 4, 16)}
    executor = DaskExecutor(address=existing_cluster)
    state = flow.run(executor=executor, return_tasks=list(sizes.values()),
                     memory_budget=8 * MB)
    assert state.is_successful(), state.message
    # Brought home within 8 MB: the 1 and 4 MB values; the 16 MB one stayed.
    assert not state.result[sizes[1]].is_result_deferred()
    assert not state.result[sizes[4]].is_result_deferred()
    assert state.result[sizes[16]].is_result_deferred()
    assert state.result[sizes[16]].result.nbytes == 16 * MB


def test_a_temporary_cluster_brings_home_reference_and_returned_tasks_only():
    with Flow("temporary") as flow:
        first = array_of(1)
        second = double.map([])
        kept = array_of(2)
        last = grand_total([1.0, 2.0])
        flow.add_edge(first, last)
        flow.add_edge(kept, last)
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False})
    state = flow.run(executor=executor, return_tasks=[kept])
    assert state.is_successful(), state.message
    assert state.result[last].result == 3.0
    assert state.result[kept].result.nbytes == 2 * MB
    assert isinstance(state.result[first], Success)
    with pytest.raises(ResultNotKeptError) as not_kept:
        state.result[first].result  # noqa: B018 - reading fetches
    message = str(not_kept.value)
    assert message == (
        "The result of task 'array_of' was not kept: it stayed on the temporary "
        "Dask cluster, which shut down at the end of the run; name the task in "
        "flow.run(return_tasks=[...]) to bring its result home, or run on an "
        "existing cluster (DaskExecutor(address=...)) to read results after the run."
    )
    assert state.result[second].result == []


def test_return_tasks_must_belong_to_the_flow():
    from nbflow.errors import FlowValidationError

    with Flow("one") as flow:
        array_of(1)
    with Flow("other"):
        stranger = array_of(2)
    with pytest.raises(FlowValidationError, match="return_tasks names"):
        flow.run(return_tasks=[stranger])


def test_a_list_of_upstream_results_reaches_a_worker_process(existing_cluster, tmp_path):
    # The slot marking where each upstream value goes must survive pickling.
    with Flow("nested") as flow:
        totals = [total_of(make(i, 1, str(tmp_path / "log"))) for i in range(3)]
        grand = grand_total(totals)
    state = flow.run(executor=DaskExecutor(address=existing_cluster))
    assert state.is_successful(), state.message
    assert state.result[grand].result == float(sum(i * MB // 8 for i in range(3)))


def test_with_return_tasks_other_values_are_dropped_as_the_run_goes(
    existing_cluster, tmp_path
):
    log = str(tmp_path / "log")
    with Flow("dropping") as flow:
        made = make_dropped.map(range(4), unmapped(2), unmapped(log))
        summed = total_of.map(double.map(made))
        grand = grand_total(summed)
    state = flow.run(executor=DaskExecutor(address=existing_cluster),
                     return_tasks=[summed])
    assert state.is_successful(), state.message
    # The run still holds its state, yet the cluster let the values go.
    assert keys_in_memory(existing_cluster, "made-then-dropped") == []
    assert state.result[summed].result == [2.0 * i * 2 * MB // 8 for i in range(4)]
    assert state.result[grand].result == sum(state.result[summed].result)
    child = state.result[made].map_states[1]
    assert isinstance(child, Success)
    with pytest.raises(ResultNotKeptError, match=r"'made-then-dropped\[1\]' was not "
                       "kept: the run was given return_tasks without it"):
        child.result  # noqa: B018 - reading fetches

    # Without return_tasks, every value stays readable while the state is held.
    state = flow.run(executor=DaskExecutor(address=existing_cluster))
    assert len(keys_in_memory(existing_cluster, "made-then-dropped")) == 4
    assert state.result[made].map_states[1].result.array[0] == 1.0


def test_cached_and_skipped_values_stay_on_the_cluster(existing_cluster, tmp_path):
    from nbflow.engine import cache
    from nbflow.engine.state import Cached, Skipped

    cache.clear()
    log = tmp_path / "arrivals"
    with Flow("cached") as flow:
        made = make_cached(2, SIZE_MB, str(log))
        skipped = make_skipped(SIZE_MB, str(log))
        summed = total_of(made)
        after = grand_total([1.0])  # skips too: Skipped from upstream
        flow.add_edge(skipped, after)
    executor = DaskExecutor(address=existing_cluster)
    try:
        first = flow.run(executor=executor)
        second = flow.run(executor=executor)
        for state in (first, second):
            assert state.is_successful(), state.message
            assert state.result[summed].result == 2.0 * SIZE_MB * MB // 8
            # The kind and message came home; the value stayed where it was made.
            assert isinstance(state.result[made], Cached)
            assert state.result[made].cached_result_expiration is not None
            assert state.result[made].is_result_deferred()
            assert isinstance(state.result[skipped], Skipped)
            assert state.result[skipped].message == "nothing new to make"
            assert state.result[skipped].is_result_deferred()
        assert (tmp_path / "arrivals.runs").read_text() == "x"  # the cache stood in
        assert os.getpid() not in arrivals(log)
        assert float(second.result[made].result.array[0]) == 2.0
        assert float(second.result[skipped].result.array[0]) == 3.0
        assert os.getpid() in arrivals(log)
    finally:
        cache.clear()
