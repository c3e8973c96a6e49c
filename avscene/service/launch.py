"""Start ``avscene serve`` as a child process on a free loopback port and wait until its workers are ready (the
service's tests and its benchmark start real servers this way)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running ``avscene serve`` child (its own process group, so its workers can be ended with it)."""

    process: subprocess.Popen
    url: str
    log: Path

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/v1/health", timeout=5) as reply:
            return json.loads(reply.read())

    def wait_ready(self, timeout_s: float = 120.0) -> dict:
        """Poll ``/v1/health`` until every worker has loaded its models; RuntimeError with the log's end otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"avscene serve exited with {self.process.returncode}: {self.log_tail()}")
            try:
                health = self.health()
                if health["workers_ready"] == health["workers"] or health["error"]:
                    return health
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"avscene serve not ready after {timeout_s:g} s: {self.log_tail()}")

    def log_tail(self, n_chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n_chars:] if self.log.is_file() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the server process alone (``kill -9`` by default) and reap it."""
        self.process.send_signal(sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """End the server and everything of its process group (workers a killed server left behind)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait(timeout=30)


def start_server(options: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> Server:
    """``python -m avscene serve --host 127.0.0.1 --port <free> OPTIONS``, its output in ``log``."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "avscene", "serve", "--host", HOST, "--port", str(port),
                                    *options], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
    return Server(process, f"http://{HOST}:{port}", log)
