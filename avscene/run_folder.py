"""Run folders written whole or not at all: a temporary sibling, a ``complete`` record of its files' digests, a rename.

Training, ablation rows, VADD evaluations and fine-tuning write their run folder through :func:`run_folder`: files
go to a hidden sibling ``.<name>.partial-<pid>-<tag>-<host>``; when the body ends, every file's sha256 is recorded in
``complete.json`` and the sibling is renamed to the run's name, replacing the previous run there. Disk full (any
``OSError``), an exception or a signal (:func:`avscene.entry.run_cli` turns SIGINT/SIGTERM into exceptions) remove
the sibling and leave the previous run as it was; a ``kill -9`` leaves the sibling behind, and the next run into the
same folder removes it (its process is gone). Readers that must not take an unfinished or altered folder for a
result (ablation reuse, ``vadd check --heads``) call :func:`finished_problem` / :func:`require_finished`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avscene.errors import InputFileError, RunFolderError
from avscene.textfiles import read_json

logger = logging.getLogger(__name__)

COMPLETE_RECORD = "complete.json"
RECORD_FORMAT = 1
_PARTIAL, _PREVIOUS = "partial", "previous"  # the two kinds of hidden sibling


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _prefix(final: Path, kind: str) -> str:
    return f".{final.name}.{kind}-"


def _sibling(final: Path, kind: str) -> Path:
    """A new hidden sibling of ``final``: ``.<name>.<kind>-<pid>-<tag>-<host>``."""
    return final.with_name(f"{_prefix(final, kind)}{os.getpid()}-{uuid.uuid4().hex[:8]}-{socket.gethostname()}")


def _owner_is_gone(sibling: Path, prefix: str) -> bool:
    """Whether the process that made ``sibling`` is dead on this host (a sibling of another host is left alone)."""
    fields = sibling.name[len(prefix):].split("-", 2)  # pid, tag, host
    if len(fields) != 3 or fields[2] != socket.gethostname() or not fields[0].isdigit():
        return False
    try:
        os.kill(int(fields[0]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    return False


def _clear_leftovers(final: Path) -> None:
    """Remove the siblings a killed run into ``final`` left behind; put back a previous run whose replacement was
    killed between its two renames."""
    for kind in (_PREVIOUS, _PARTIAL):
        prefix = _prefix(final, kind)
        for sibling in sorted(p for p in final.parent.iterdir() if p.name.startswith(prefix)):
            if not _owner_is_gone(sibling, prefix):
                continue
            if kind == _PREVIOUS and not final.exists():
                sibling.rename(final)
                logger.warning("%s: restored the previous run (its replacement was interrupted)", final)
            else:
                shutil.rmtree(sibling, ignore_errors=True)
                logger.info("%s: removed %s, left by an interrupted run", final, sibling.name)


def check_replaceable(final: Path) -> None:
    """Refuse a run folder path that holds something else than an earlier run (a file, a folder of other things):
    :func:`run_folder` checks it again, callers check it before hours of work."""
    if not final.exists():
        return
    if not final.is_dir():
        raise RunFolderError(f"{final}: exists and is not a folder; choose another run folder (--out)")
    if any(final.iterdir()) and not ((final / COMPLETE_RECORD).is_file() or (final / "config.json").is_file()):
        raise RunFolderError(f"{final}: exists and is not a run folder (no {COMPLETE_RECORD} or config.json); a run "
                             "replaces its whole folder, so choose another run folder (--out) or empty this one")


def utc_now() -> str:
    """The current time in UTC, ISO 8601 to the second (``2026-12-06T22:51:03Z``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_record(folder: Path) -> None:
    """``complete.json``: the sha256 and size of every file of ``folder``, flushed to disk with the files."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, "rb") as f:
            os.fsync(f.fileno())
            files[path.relative_to(folder).as_posix()] = {"sha256": hashlib.file_digest(f, "sha256").hexdigest(),
                                                          "bytes": os.fstat(f.fileno()).st_size}
    record = {"format": RECORD_FORMAT, "finished_utc": utc_now(),
              "files": files}
    with open(folder / COMPLETE_RECORD, "w") as f:
        f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _put_in_place(partial: Path, final: Path) -> None:
    """Rename ``partial`` to ``final``; an earlier run there is moved aside first and removed after."""
    if not final.exists():
        partial.rename(final)
        return
    previous = _sibling(final, _PREVIOUS)
    final.rename(previous)
    try:
        partial.rename(final)
    except BaseException:
        previous.rename(final)
        raise
    shutil.rmtree(previous, ignore_errors=True)


@contextmanager
def run_folder(final: Path) -> Iterator[Path]:
    """Write a run folder atomically: yields the temporary sibling to write into; on a normal exit records its files'
    digests (``complete.json``) and renames it to ``final``, replacing the previous run.

    Raises:
        RunFolderError: ``final`` is not a run folder, or writing failed (disk full...): the message names the folder
            and says the previous run is unchanged. Any other exception (or signal) propagates, with the same cleanup.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(final)
    check_replaceable(final)
    partial = _sibling(final, _PARTIAL)
    partial.mkdir()
    try:
        yield partial
        _write_record(partial)
        _put_in_place(partial, final)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        where = f" ({Path(err.filename).name})" if err.filename else ""
        raise RunFolderError(f"{final}: the run could not be written: {err.strerror or err}{where}; the previous run "
                             "there is unchanged") from err
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def finished_problem(folder: Path) -> str:
    """'' when ``folder`` holds a ``complete`` record whose files are all there with their recorded digests, else
    what is wrong (one sentence naming the folder or file)."""
    folder = Path(folder)
    record_path = folder / COMPLETE_RECORD
    if not folder.is_dir():
        return f"{folder}: no such run folder"
    if not record_path.is_file():
        return (f"{folder}: no {COMPLETE_RECORD} record, so it is not known to be a finished run (written by an older "
                "avscene, or interrupted)")
    try:
        files = read_json(record_path)["files"]
    except (InputFileError, KeyError, TypeError) as err:
        return f"{record_path}: not a run record ({err})"
    for name, recorded in files.items():
        path = folder / name
        if not path.is_file():
            return f"{path}: listed in {COMPLETE_RECORD} but missing"
        if file_sha256(path) != recorded["sha256"]:
            return f"{path}: changed since the run finished (sha256 differs from {COMPLETE_RECORD})"
    return ""


def require_finished(folder: Path, rerun: str) -> None:
    """Raise a :class:`RunFolderError` unless ``folder`` is a finished, unaltered run; ``rerun``: the command that
    writes it again, given as the fix."""
    problem = finished_problem(folder)
    if problem:
        raise RunFolderError(f"{problem}; run `{rerun}` to write it again")
