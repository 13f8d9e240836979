"""The run loop: what a run leaves behind in the process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_run_leaves_the_interpreter_as_it_found_it():
    """A run, and a run cancelled from another thread, leave no pending async
    exception flag in CPython's eval loop (clearing one with
    PyThreadState_SetAsyncExc(id, NULL) did; cProfile then hung forever)."""
    script = textwrap.dedent("""
        import cProfile, threading, time
        from nbflow import Flow, task
        from nbflow.engine.runner import FlowRun

        @task
        def slow(x):
            for _ in range(200):
                time.sleep(0.01)
            return x

        @task
        def inc(x):
            return x + 1

        with Flow("f") as flow:
            inc(1)
        flow.run()
        with Flow("g") as flow2:
            slow(1)
        run = FlowRun(flow2)
        run.start()
        time.sleep(0.2)
        run.cancel()
        print(run.join(30).name)
        cProfile.run("sum(range(10))", "/dev/null")
        print("profiled")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["Cancelled", "profiled"], done.stderr
