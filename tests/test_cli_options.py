"""nbflow run's executor options come from ExecutorConfig's field metadata."""

from __future__ import annotations

import pytest
from _cli import assert_usage_error, run

from nbflow.cli.options import FLAGS, build_executor
from nbflow.errors import CommandLineError, NbflowError, WholeNumberError
from nbflow.executors import DaskExecutor, LocalDaskExecutor
from nbflow.executors.config import OPTIONS, ExecutorConfig


def test_flags_are_the_config_fields_that_name_one():
    assert FLAGS == {
        "--scheduler": ["scheduler"],
        "--num-workers": ["num_workers", "n_workers"],
        "--address": ["address"],
        "--report": ["performance_report_path"],
        "--worker-timeout": ["worker_timeout"],
    }
    assert all(OPTIONS[n].flag == f for f, names in FLAGS.items() for n in names)


def test_an_option_sets_the_field_of_the_kind_it_applies_to(tmp_path):
    local = build_executor(None, {"--num-workers": "3"})
    assert isinstance(local, LocalDaskExecutor) and local.num_workers == 3
    dask = build_executor("dask", {"--num-workers": "2"})
    assert isinstance(dask, DaskExecutor) and dask.cluster_kwargs == {"n_workers": 2}
    report = str(tmp_path / "r.html")
    inferred = build_executor(None, {"--report": report})
    assert isinstance(inferred, DaskExecutor)
    assert inferred.performance_report_path == report
    assert build_executor(None, {"--scheduler": None}) is None


def test_an_option_that_does_not_apply_says_where_it_does():
    with pytest.raises(CommandLineError) as info:
        build_executor(None, {"--address": "tcp://127.0.0.1:8786", "--num-workers": "2"})
    assert str(info.value) == (
        "--num-workers does not apply to --executor dask with --address; it applies "
        "to --executor local-dask, or --executor dask without --address."
    )


@pytest.mark.parametrize("field, kind", [("num_workers", "local-dask"),
                                         ("n_workers", "dask"),
                                         ("threads_per_worker", "dask")])
def test_a_count_has_one_check_and_one_message(field, kind):
    spec = OPTIONS[field]
    expected = str(WholeNumberError(field, -1, spec.minimum, spec.default))
    assert ExecutorConfig(kind=kind, **{field: -1}).problem() == expected
    if field == "num_workers":
        with pytest.raises(WholeNumberError) as info:
            LocalDaskExecutor(num_workers=-1)
        assert str(info.value) == expected
        with pytest.raises(WholeNumberError) as info:
            build_executor(kind, {"--num-workers": "-1"})
        assert str(info.value) == expected.replace(field, "--num-workers")


def test_worker_timeout_is_the_config_field_with_its_one_check():
    address = "tcp://127.0.0.1:8786"
    given = {"--address": address, "--worker-timeout": "2.5"}
    executor = build_executor(None, given)
    assert isinstance(executor, DaskExecutor) and executor.worker_timeout == 2.5
    never = build_executor("dask", {**given, "--worker-timeout": "none"})
    assert isinstance(never, DaskExecutor) and never.worker_timeout is None
    for bad in ("-1", "soon", "inf"):
        with pytest.raises(NbflowError) as info:
            build_executor(None, {**given, "--worker-timeout": bad})
        assert str(info.value) == (
            "--worker-timeout must be a number of seconds >= 0, or None not to "
            f"wait, got {float(bad) if bad != 'soon' else bad!r}."
        )
    with pytest.raises(CommandLineError) as info:
        build_executor("dask", {"--worker-timeout": "5"})
    assert str(info.value) == (
        "--worker-timeout applies to --executor dask with --address; give the "
        "scheduler's --address."
    )
    with pytest.raises(CommandLineError) as info:
        build_executor("local-dask", {"--worker-timeout": "5"})
    assert str(info.value) == (
        "--worker-timeout does not apply to --executor local-dask; it applies to "
        "--executor dask with --address."
    )


def test_worker_timeout_bad_value_is_a_usage_error(tmp_path):
    script = tmp_path / "one.py"
    script.write_text("from nbflow import Flow\nflow = Flow('one')\n")
    result = run("run", script, "--address", "tcp://127.0.0.1:8786",
                 "--worker-timeout", "-3")
    assert_usage_error(result, "--worker-timeout must be a number of seconds >= 0")
