"""Fixtures of the browser tier: one JupyterLab server, one Chromium, a page per test.

The server serves a temporary copy of the repository's ``notebooks/`` plus the
small notebooks of :mod:`_notebooks`. Screenshots go to
``test-artifacts/browser/`` (``$NBFLOW_BROWSER_OUT`` overrides it); a failing
test leaves a screenshot of its whole page there too.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import _harness  # noqa: E402
from _notebooks import write_notebooks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OUT = Path(os.environ.get("NBFLOW_BROWSER_OUT", REPO / "test-artifacts" / "browser"))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    """Keep each phase's report on the test item (for the failure screenshot)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The folder for screenshots."""
    OUT.mkdir(parents=True, exist_ok=True)
    return OUT


@pytest.fixture(scope="session")
def notebook_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of ``notebooks/`` plus the tests' own notebooks."""
    root = tmp_path_factory.mktemp("browser-root")
    for path in (REPO / "notebooks").glob("*.ipynb"):
        shutil.copy(path, root / path.name)
    write_notebooks(root)
    return root


@pytest.fixture(scope="session")
def lab(notebook_root: Path) -> Iterator[_harness.Server]:
    """A JupyterLab server on 127.0.0.1 (a random port) serving ``notebook_root``."""
    with _harness.server(notebook_root) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the session; a missing one fails the test."""
    if not Path(_harness.CHROMIUM).exists():
        pytest.fail(
            f"Chromium is missing at {_harness.CHROMIUM!r}; install Debian's "
            "package (`apt-get install chromium`, as scripts/test.sh does as root) "
            "or set $CHROMIUM to its path."
        )
    with _harness.chromium() as chromium:
        yield chromium


@pytest.fixture
def page(
    request: pytest.FixtureRequest, browser: Any, lab: _harness.Server, artifacts: Path
) -> Iterator[Any]:
    """A page in a fresh browser context, external requests blocked.

    ``page.external_requests`` lists what was blocked. On failure, a screenshot
    of the page is kept; afterwards the server's kernels are shut down.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 1200})
    context.set_default_timeout(60_000)
    pg = context.new_page()
    pg.external_requests = []
    _harness.block_external(context, pg.external_requests)
    try:
        yield pg
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = request.node.name.replace("/", "_").replace("[", "-").strip("]")
            try:
                pg.screenshot(
                    path=str(artifacts / f"FAILED-{name}.png"), full_page=True
                )
            except Exception as exc:  # noqa: BLE001 - the failure itself is reported
                print(f"no failure screenshot: {exc}")
            print(f"jupyter lab log:\n{lab.log_tail()}")
        context.close()
        _harness.shutdown_kernels(lab)
