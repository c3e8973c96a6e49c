"""A bounded pool of worker processes, each holding one :class:`vadd.check.Checker` (heads and extractors loaded
once), fed from a bounded queue of jobs; a job past its timeout has its worker killed and replaced."""
from __future__ import annotations

import json
import logging
import multiprocessing
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from avscene.service.jobs import DONE, FAILED, RUNNING, JobStore, utc_now, write_atomic

logger = logging.getLogger(__name__)

POLL_S = 0.2


def check_job(checker, media: Path, filename: str, folder: Path) -> None:
    """Check ``media`` and write the job's ``check.json`` and ``report.html`` (named ``filename``)."""
    from vadd.page import page_entry, render_report

    check = checker.check(media).to_dict()
    check["video"] = check["audio"] = filename  # the client's name, not the server's path
    write_atomic(folder / "check.json", json.dumps(check, indent=2) + "\n")
    entry = page_entry(filename, filename, check, media=media)
    write_atomic(folder / "report.html", render_report([entry], check["heads"], title=f"vadd check: {filename}"))


def worker_main(heads_dir: str, device: str, conn: Connection) -> None:
    """A worker process: load the heads once, then check the jobs the pool sends until it sends None."""
    from avscene.entry import USER_ERRORS
    from vadd.check import Checker

    try:
        checker = Checker(Path(heads_dir), device=device)
    except Exception as err:  # any failure here would recur in every replacement: the pool stops asking
        conn.send(("fatal", None, f"cannot load the heads of {heads_dir}: {type(err).__name__}: {err}"))
        return
    conn.send(("ready", None, ""))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the server is gone
            return
        if job is None:
            return
        job_id, media, filename, folder = job
        try:
            check_job(checker, Path(media), filename, Path(folder))
            reply = ("done", job_id, "")
        except USER_ERRORS as err:
            reply = ("failed", job_id, str(err).replace(str(media), filename))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    job_id: str | None = None
    started_s: float = 0.0


class WorkerPool:
    """``n_workers`` checker processes fed by a supervisor thread from a queue of at most ``queue_limit`` jobs."""

    def __init__(self, store: JobStore, heads_dir: Path, n_workers: int = 1, device: str = "cpu",
                 job_timeout_s: float = 600.0, queue_limit: int = 1000):
        if n_workers < 1:
            raise ValueError(f"workers must be >= 1, got {n_workers}")
        self.store, self.heads_dir, self.device = store, str(heads_dir), device
        self.job_timeout_s = job_timeout_s
        self.pending: queue.Queue[tuple[str, str, str]] = queue.Queue(maxsize=queue_limit)
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded server
        self.workers = [self._start_worker() for _ in range(n_workers)]
        self.fatal = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="avscene-serve-pool", daemon=True)
        self._thread.start()

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=worker_main, args=(self.heads_dir, self.device, child), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, job_id: str, media: str, filename: str) -> None:
        """Queue a job; queue.Full when the queue is at its limit."""
        self.pending.put_nowait((job_id, media, filename))

    def status(self) -> dict:
        return {"workers": len(self.workers), "workers_ready": sum(w.ready for w in self.workers),
                "running": sum(w.job_id is not None for w in self.workers), "queued": self.pending.qsize(),
                "error": self.fatal or None}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()

    def _finish(self, worker: _Worker, status: str, error: str | None) -> None:
        job_id, worker.job_id = worker.job_id, None
        elapsed = round(time.monotonic() - worker.started_s, 3)
        self.store.update(job_id, status=status, error=error, finished_utc=utc_now(), seconds=elapsed)
        logger.info("job %s %s in %.2f s%s", job_id, status, elapsed, f": {error}" if error else "")

    def _replace(self, worker: _Worker) -> _Worker:
        worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()
        fresh = self._start_worker()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the pool must outlive a bug in one step; it is logged with its traceback
                logger.exception("worker pool step failed")
                time.sleep(POLL_S)

    def _step(self) -> None:
        for worker in list(self.workers):
            if worker.job_id is not None and time.monotonic() - worker.started_s > self.job_timeout_s:
                self._replace(worker)  # first, so that whoever sees the job failed sees the replacement too
                self._finish(worker, FAILED, f"timed out after {self.job_timeout_s:g} s (the per-job limit)")
        for worker in list(self.workers):
            if worker.ready and worker.job_id is None and not self.fatal:
                try:
                    job_id, media, filename = self.pending.get_nowait()
                except queue.Empty:
                    break
                worker.job_id, worker.started_s = job_id, time.monotonic()
                self.store.update(job_id, status=RUNNING, started_utc=utc_now())
                worker.conn.send((job_id, media, filename, str(self.store.folder(job_id))))
        if not self.workers:
            time.sleep(POLL_S)
            return
        ready = wait([w.conn for w in self.workers], timeout=POLL_S)
        for worker in [w for w in self.workers if w.conn in ready]:
            try:
                kind, job_id, message = worker.conn.recv()
            except (EOFError, OSError):
                code = worker.process.exitcode
                if worker.job_id is not None:
                    self._finish(worker, FAILED, f"the worker process died during the check (exit code {code})")
                if self.fatal:  # it could not load the heads: another would not either
                    worker.conn.close()
                    self.workers.remove(worker)
                    continue
                logger.error("worker process %s died (exit code %s); starting another", worker.process.pid, code)
                self._replace(worker)
                continue
            if kind == "ready":
                worker.ready = True
            elif kind == "fatal":
                self.fatal = message
                logger.error("%s", message)
                self._fail_pending(message)
            else:
                self._finish(worker, DONE if kind == "done" else FAILED, message or None)

    def _fail_pending(self, message: str) -> None:
        while True:
            try:
                job_id, _, _ = self.pending.get_nowait()
            except queue.Empty:
                return
            self.store.update(job_id, status=FAILED, error=message, finished_utc=utc_now())
