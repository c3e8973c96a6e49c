"""Jobs on disk: ``STATE/jobs/<id>/job.json`` (status and timings), the check's ``check.json`` and ``report.html``.

Every write replaces its file atomically, so a server killed at any moment leaves each job readable; a restart
marks the jobs that were queued or running as ``interrupted`` (:meth:`JobStore.recover`).
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from pathlib import Path

from avscene.run_folder import utc_now

logger = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, INTERRUPTED = "queued", "running", "done", "failed", "interrupted"
IN_FLIGHT = (QUEUED, RUNNING)
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class JobStore:
    """The jobs of one server's state folder."""

    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming = Path(state_dir) / "incoming"  # uploads being received and probed, before they are jobs
        self.incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def folder(self, job_id: str) -> Path:
        """The job's folder; KeyError for anything that is not an existing job's id (no path ever built from input)."""
        if not JOB_ID.match(job_id) or not (self.root / job_id / "job.json").is_file():
            raise KeyError(job_id)
        return self.root / job_id

    def create(self, media: Path, filename: str, source: str) -> dict:
        """A new queued job checking ``media`` (shown as ``filename``); ``source``: 'upload' or 'path'."""
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir()
        job = {"id": job_id, "status": QUEUED, "source": source, "filename": filename, "media": str(media),
               "submitted_utc": utc_now(), "started_utc": None, "finished_utc": None, "seconds": None, "error": None}
        write_atomic(folder / "job.json", json.dumps(job, indent=2) + "\n")
        return job

    def get(self, job_id: str) -> dict:
        return json.loads((self.folder(job_id) / "job.json").read_text())

    def update(self, job_id: str, **changes) -> dict:
        with self._lock:
            job = {**self.get(job_id), **changes}
            write_atomic(self.folder(job_id) / "job.json", json.dumps(job, indent=2) + "\n")
        return job

    def result(self, job_id: str) -> dict | None:
        path = self.folder(job_id) / "check.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def report_path(self, job_id: str) -> Path:
        return self.folder(job_id) / "report.html"

    def all_ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if JOB_ID.match(p.name) and (p / "job.json").is_file())

    def recover(self) -> list[str]:
        """Mark every job left queued or running by an earlier server as interrupted; empty ``incoming``."""
        interrupted = []
        for job_id in self.all_ids():
            job = self.get(job_id)
            if job["status"] in IN_FLIGHT:
                self.update(job_id, status=INTERRUPTED, finished_utc=utc_now(),
                            error=f"interrupted: the server stopped while the job was {job['status']}; submit it again")
                interrupted.append(job_id)
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
        if interrupted:
            logger.warning("%d jobs were in flight when the server stopped: marked interrupted", len(interrupted))
        return interrupted
