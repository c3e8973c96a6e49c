"""Two long-lived worker processes that start ``python -m extract`` commands at the same instant (a barrier), so a
race test runs many trials without paying the interpreter's and torch's start-up for each one."""
from __future__ import annotations

import contextlib
import io
import multiprocessing
import time
import traceback


def _serve(tasks, results, barrier) -> None:
    import logging
    import sys

    import torch

    import extract.runner  # noqa: F401 (imported before the first trial: its start-up is not part of the race)
    from extract.cli import main

    torch.set_num_threads(1)  # two workers on a small shared machine: no oversubscribed thread pools
    logging.basicConfig(level=logging.WARNING, stream=sys.__stderr__)  # before run_cli's: not into one trial's buffer
    results.put("ready")
    while (task := tasks.get()) is not None:
        argv, delay_s = task
        barrier.wait()
        time.sleep(delay_s)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc: int | str = main(argv)
            except BaseException:  # a crash: anything main lets through
                rc = "crash"
                err.write(traceback.format_exc())
        results.put((rc, err.getvalue()))


class RacingWorkers:
    """``n`` spawned processes; :meth:`race` runs one command in each at once and returns their (status, stderr)."""

    def __init__(self, n: int = 2, timeout_s: float = 120.0):
        ctx = multiprocessing.get_context("spawn")
        self.timeout_s = timeout_s
        barrier = ctx.Barrier(n)
        self.queues = [(ctx.Queue(), ctx.Queue()) for _ in range(n)]
        self.procs = [ctx.Process(target=_serve, args=(t, r, barrier), daemon=True) for t, r in self.queues]
        for p in self.procs:
            p.start()
        for _, results in self.queues:
            assert results.get(timeout=self.timeout_s) == "ready"

    def race(self, commands: list[tuple[list[str], float]]) -> list[tuple[int | str, str]]:
        for (tasks, _), command in zip(self.queues, commands):
            tasks.put(command)
        return [results.get(timeout=self.timeout_s) for _, results in self.queues]

    def close(self) -> None:
        for tasks, _ in self.queues:
            tasks.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
