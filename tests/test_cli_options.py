"""nbflow run's executor options come from ExecutorConfig's field metadata."""

from __future__ import annotations

import pytest

from nbflow.cli.options import FLAGS, build_executor
from nbflow.errors import CommandLineError, WholeNumberError
from nbflow.executors import DaskExecutor, LocalDaskExecutor
from nbflow.executors.config import OPTIONS, ExecutorConfig


def test_flags_are_the_config_fields_that_name_one():
    assert FLAGS == {
        "--scheduler": ["scheduler"],
        "--num-workers": ["num_workers", "n_workers"],
        "--address": ["address"],
        "--report": ["performance_report_path"],
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
