"""One writer per shard: an exclusively created lock file beside the store, holding its owner's host, pid and start
time.

``<store>.shard-<i>-of-<n>.lock`` is created atomically before the store is created or written and removed when the
run ends. A second run on the same shard is refused with the owner named, or waits (``--wait``). A stale lock (its pid
dead on this host, or not refreshed for ``stale_after_s`` on another host) is taken over, and logged. The runner
refreshes the lock after every block it writes.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from avscene.run_folder import utc_now
from extract.store.format import StoreError

logger = logging.getLogger(__name__)

STALE_AFTER_S = 6 * 3600.0  # a lock of another host not refreshed for this long belongs to a dead run
TAKEOVER_GUARD_STALE_S = 60.0
POLL_S = 0.2


def lock_path(location: str, shard_index: int, shard_count: int) -> Path | None:
    """The lock file of one shard of a local store (``file://`` URLs included); None for other URLs (object stores
    have no exclusive create)."""
    local = location.removeprefix("file://")
    if "://" in local:
        return None
    return Path(f"{local.rstrip('/')}.shard-{shard_index}-of-{shard_count}.lock")


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started_utc": utc_now(), "started_unix": time.time(),
            "command": " ".join(sys.argv)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started_utc')} ({owner.get('command', '')})"


class ShardLock:
    """The lock of one shard of one store; a context manager (acquire on enter, release on exit)."""

    def __init__(self, location: str, shard_index: int = 0, shard_count: int = 1, *, wait: bool = False,
                 stale_after_s: float = STALE_AFTER_S):
        self.location, self.shard = location, f"{shard_index}/{shard_count}"
        self.path = lock_path(location, shard_index, shard_count)
        self.wait, self.stale_after_s = wait, stale_after_s
        self.owner: dict | None = None

    def __enter__(self) -> "ShardLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock file, or raise naming the running owner (or wait for it with ``wait``)."""
        if self.path is None:
            logger.warning("%s: no lock on a remote store; run one writer per shard", self.location)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        announced = False
        while not self._try_create():
            holder = self._read()
            if holder is not None and self._stale(holder):
                self._take_over(holder)
                continue
            if not self.wait:
                raise StoreError(
                    f"{self.location}: shard {self.shard} is being written by {describe(holder or {})} (lock "
                    f"{self.path}); wait for it to finish, pass --wait to start after it, or delete the lock if that "
                    "run is gone")
            if not announced:
                logger.info("%s: waiting for %s to finish shard %s", self.location, describe(holder or {}), self.shard)
                announced = True
            time.sleep(POLL_S)

    def refresh(self) -> None:
        """Mark the lock as alive (its modification time), for runs on other hosts judging it."""
        if self.path is not None and self.owner is not None:
            os.utime(self.path)

    def release(self) -> None:
        if self.path is not None and self.owner is not None and self._read() == self.owner:
            self.path.unlink(missing_ok=True)
        self.owner = None

    def _try_create(self) -> bool:
        """Create the lock with its content at once: written to a private file, then hard-linked to the lock's
        name (an exclusive create, like O_EXCL, that never shows an empty lock)."""
        owner = _owner()
        private = self.path.with_name(f"{self.path.name}.{owner['pid']}.tmp")
        private.write_text(json.dumps(owner))
        try:
            os.link(private, self.path)
        except FileExistsError:
            return False
        finally:
            private.unlink(missing_ok=True)
        self.owner = owner
        return True

    def _read(self) -> dict | None:
        """The lock's owner; None when the file is gone; {} while its owner is still writing it."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:  # not JSON (a lock never is, see _try_create): judge by its age
            return self._age_s(self.path) > TAKEOVER_GUARD_STALE_S
        if holder.get("host") == socket.gethostname():
            return not _pid_alive(int(holder.get("pid", -1)))
        return self._age_s(self.path) > self.stale_after_s

    @staticmethod
    def _age_s(path: Path) -> float:
        try:
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _take_over(self, holder: dict) -> None:
        """Remove a stale lock, guarded so that two runs judging it at once do not both remove it (the second
        would delete the first one's fresh lock)."""
        guard = self.path.with_name(self.path.name + ".takeover")
        if self._age_s(guard) > TAKEOVER_GUARD_STALE_S:
            guard.unlink(missing_ok=True)  # left by a run killed while taking over
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            time.sleep(POLL_S)  # another run is taking it over
            return
        try:
            if self._read() == holder:
                logger.warning("%s: taking over the stale lock of %s (%s)", self.location, describe(holder), self.path)
                self.path.unlink(missing_ok=True)
        finally:
            guard.unlink(missing_ok=True)
