"""Ports for throwaway servers: pick a free one, wait until a server listens on it.

Standard library only, so scripts/devstack.py can use it before any dependency is installed.
"""

import fcntl
import os
import random
import socket
import tempfile
import time
from pathlib import Path

# Ports this process reserved (FREE_PORT_RANGE): their lock files stay open, so locked, until it exits.
_reserved = {}
_next = []


def free_port(host="127.0.0.1"):
    """A port nothing listens on. With FREE_PORT_RANGE="LOW-HIGH" in the environment (parallel test runs,
    tests/support/parallel.py), one from that range that no other process has reserved; otherwise one the
    kernel picks."""
    if os.environ.get("FREE_PORT_RANGE"):
        return _reserve_port(host, *map(int, os.environ["FREE_PORT_RANGE"].split("-")))
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _reserve_port(host, low, high):
    """The next port of LOW..HIGH (from a random start, then in turn) whose lock file this process could
    take and that nothing listens on. Between picking a port and a server binding it, another process
    could otherwise pick the same one; the lock (flock, released when the process ends) prevents that."""
    lock_dir = Path(tempfile.gettempdir()) / "localservers-ports"
    if not lock_dir.is_dir():
        lock_dir.mkdir(exist_ok=True)
        try:
            lock_dir.chmod(0o1777)  # shared by every user's runs, like /tmp
        except OSError:
            pass
    if not _next:
        _next.append(random.randint(low, high))
    for _ in range(high - low + 1):
        port = _next[0]
        _next[0] = low if port >= high else port + 1
        if port in _reserved:
            if _bindable(host, port):  # ours, and free again: its server has gone
                return port
            continue
        fd = os.open(lock_dir / f"{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another process has it
            continue
        if _bindable(host, port):
            _reserved[port] = fd
            return port
        os.close(fd)
    raise RuntimeError(f"no free port in {low}-{high}")


def _bindable(host, port):
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(port, process=None, *, name="the server", host="127.0.0.1", log_path=None, timeout=60):
    """Return once HOST:PORT accepts connections; RuntimeError (with LOG_PATH's tail) if PROCESS exits first
    or nothing listens within TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited with status {process.returncode} before it listened on "
                               f"{host}:{port}{_log_paragraph(log_path)}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{name} did not listen on {host}:{port} within {timeout}s{_log_paragraph(log_path)}")


def log_tail(path, lines=40):
    """The last LINES of the log file at PATH, or "(no log)"."""
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def _log_paragraph(path):
    return f":\n{log_tail(path)}" if path else ""
