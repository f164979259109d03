"""Ports for throwaway servers: pick a free one, wait until a server listens on it.

Standard library only, so scripts/devstack.py can use it before any dependency is installed.
"""

import socket
import time
from pathlib import Path


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


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
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on {host}:{port} within {timeout}s{_log_paragraph(log_path)}")


def log_tail(path, lines=40):
    """The last LINES of the log file at PATH, or "(no log)"."""
    if not path or not Path(path).exists():
        return "(no log)"
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def _log_paragraph(path):
    return f":\n{log_tail(path)}" if path else ""
