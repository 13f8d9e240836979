"""User text in the HTML nbflow makes is escaped: the performance report's
"Calling Code" shows cell code as text, never as markup.
"""

from __future__ import annotations

import pytest
from _flows import diamond_flow

from nbflow.executors import DaskExecutor


@pytest.mark.slow
def test_performance_report_calling_code_is_escaped(tmp_path, no_leaked_processes):
    executor = DaskExecutor(cluster_kwargs={"n_workers": 1, "processes": False},
                            performance_report_path=tmp_path / "report.html")
    executor.report_code = 'shout = "<b>nbflow-marker</b>" & "<img src=x onerror=alert(1)>"'
    flow, _ = diamond_flow()
    assert flow.run(executor=executor).is_successful()
    # Bokeh keeps the Summary tab's HTML entity-encoded inside the page, so
    # markup reads "&lt;b&gt;" there and text that shows "<b>" "&amp;lt;b&amp;gt;".
    report = executor.performance_report
    assert "&amp;lt;b&amp;gt;nbflow-marker&amp;lt;/b&amp;gt;" in report
    assert "&amp;lt;img src=x onerror=alert(1)&amp;gt;" in report
    assert "&lt;b&gt;nbflow-marker" not in report and "&lt;img src=x" not in report
