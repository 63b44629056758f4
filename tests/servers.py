"""Real services started by tests: an `mlflow server`, the MLflow UI, a throwaway
PostgreSQL cluster. Each binds 127.0.0.1 on a free port and is stopped after use."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}: "
                               f"{proc.stdout.read().decode()[-3000:] if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def serving(argv: list[str], health: str) -> Iterator[subprocess.Popen]:
    """Run a server in its own process group; stop the whole group afterwards
    (mlflow starts worker processes of its own)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_http(health, proc)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def mlflow_server_argv(root: Path) -> tuple[str, list[str]]:
    """The URL and command line of an `mlflow server` on a free port, with a SQLite
    backend and proxied artifacts under `root` (started again, the same store)."""
    port = free_port()
    argv = [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
            "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    return f"http://127.0.0.1:{port}", argv


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` with a SQLite backend and proxied artifacts; yields its URL."""
    url, argv = mlflow_server_argv(root)
    with serving(argv, f"{url}/health"):
        yield url


# ---------------------------------------------------------------- PostgreSQL

def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster in a temp dir; yields a SQLAlchemy URL. PostgreSQL refuses
    to run as root, so as root the cluster belongs to the `postgres` system user."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin); "
                    "install Debian's postgresql package (.ci/run does)")
    as_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="hypersweep-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    run = lambda *a: subprocess.run([*as_user, *a], check=True, capture_output=True)  # noqa: E731
    try:
        run(str(bindir / "initdb"), "-D", str(data / "db"), "-U", "hypersweep",
            "--auth=trust", "-E", "UTF8")
        run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "log"), "-w",
            "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        try:
            # The plain scheme, as the README writes it: the driver is SQLAlchemy's choice.
            yield f"postgresql://hypersweep@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(data, ignore_errors=True)
