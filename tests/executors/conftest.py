"""The executor fixture: every executor and cluster mode, for the conformance
suite and every test about running a flow.
"""

from __future__ import annotations

import pytest
from _flows import KINDS, SLOW, make_executor

PARAMS = [pytest.param(k, marks=[pytest.mark.slow] if k in SLOW else []) for k in KINDS]


@pytest.fixture(params=PARAMS)
def executor(request):
    """An executor of each kind (process-based ones marked slow)."""
    address = None
    if request.param == "cluster-existing":
        address = request.getfixturevalue("existing_cluster")
    elif request.param == "cluster-in-process":
        address = request.getfixturevalue("dask_cluster").scheduler_address
    else:
        request.getfixturevalue("no_leaked_processes")
    return make_executor(request.param, address)
