"""Big values that say where they travel, for the data-stays-on-the-cluster tests.

The module is pickled by value, so a `dask worker` started from the command
line can run its tasks. A :class:`Payload` appends the PID of every process
that unpickles it to its log file: the driver's PID there means its data
reached the driver.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import psutil

from nbflow import task
from nbflow.engine.cache_validators import all_inputs

cloudpickle.register_pickle_by_value(sys.modules[__name__])

MB = 2**20


class Payload:
    """A numpy array that logs each process that unpickles it."""

    def __init__(self, array: np.ndarray, log: str) -> None:
        self.array = array
        self.log = log

    def __reduce__(self):
        return _arrive, (self.array, self.log)

    def __sizeof__(self) -> int:
        return int(self.array.nbytes) + 64


def _arrive(array: np.ndarray, log: str) -> Payload:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    return Payload(array, log)


def arrivals(log: Path) -> set[int]:
    """The PIDs that unpickled a payload logging to ``log``."""
    return {int(p) for p in log.read_text().split()} if log.exists() else set()


@task
def make(i: int, mb: int, log: str) -> Payload:
    return Payload(np.full(mb * MB // 8, float(i)), log)


@task
def make_all(n: int, mb: int, log: str) -> list[Payload]:
    return [Payload(np.full(mb * MB // 8, float(i)), log) for i in range(n)]


@task
def double(p: Payload) -> Payload:
    return Payload(p.array * 2, p.log)


@task
def total_of(p: Payload) -> float:
    return float(p.array.sum())


@task
def grand_total(xs: list[float]) -> float:
    return float(sum(xs))


@task
def array_of(mb: int) -> np.ndarray:
    return np.ones(mb * MB // 8)


class PeakRSS:
    """The peak resident memory of this process while in the block, above
    what it was on entry (sampled every 5 ms).
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.start = self.peak = 0

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        """Bytes above the RSS on entry, at the peak."""
        return self.peak - self.start


@task(name="made-then-dropped")
def make_dropped(i: int, mb: int, log: str) -> Payload:
    return Payload(np.full(mb * MB // 8, float(i)), log)


def keys_in_memory(address: str, prefix: str) -> list[str]:
    """Keys starting with ``prefix`` that the scheduler holds in memory."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run_on_scheduler(
            lambda dask_scheduler: [k for k, ts in dask_scheduler.tasks.items()
                                    if str(k).startswith(prefix) and ts.state == "memory"])


@task(name="made-and-cached", cache_for=600, cache_validator=all_inputs)
def make_cached(i: int, mb: int, log: str) -> Payload:
    with open(log + ".runs", "a") as f:
        f.write("x")
    return Payload(np.full(mb * MB // 8, float(i)), log)


@task(name="made-and-skipped")
def make_skipped(mb: int, log: str) -> Payload:
    from nbflow.engine.signals import SKIP

    raise SKIP("nothing new to make", result=Payload(np.full(mb * MB // 8, 3.0), log))
