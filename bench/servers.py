"""The processes under test: start on a free loopback port, wait until ready, read their
memory, stop (the whole process group, SIGKILL after a grace period)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/activations"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_mib(self) -> float:
        """The resident memory of the server process (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        raise RuntimeError(f"no VmRSS for {self.name}")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )


def start(
    name: str, command: Sequence[str], env: dict[str, str], workdir: Path, port: int
) -> Server:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(name, process, log_path, port)


def wait_ready(server: Server, limit_s: float = 60.0) -> None:
    """Until `GET /readyz` answers 200 (the server's Redis and PostgreSQL are reachable)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        server.check_alive()
        with contextlib.suppress(urllib.error.URLError, OSError):
            url = f"http://127.0.0.1:{server.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"{server.name} not ready after {limit_s:.0f} s:\n{server.log_tail()}")


def stop(server: Server, grace_s: float = 10.0) -> None:
    """SIGTERM to the server's process group, SIGKILL after `grace_s`."""
    process = server.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # anything it left behind in its group
