"""Local stand-ins for the mail providers: an SMTP capture sink and a fake
SendGrid v3 API.  Standalone on purpose (no Django), so `make run`, tests and
benchmarks can start them as plain processes; ``running()`` does that for
test fixtures.
"""

import contextlib
import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host, port, process, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout}s")


def stop_when_parent_dies():
    """In the child (Linux): SIGTERM when the starting process dies, so no server outlives a killed run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def running(module, *args, host="127.0.0.1", port=None, log_path=None):
    """Run ``python -m campaigns.localservers.<module>`` until the block ends.

    Yields ``(process, port)`` once the port accepts connections.
    """
    port = port or free_port(host)
    command = [sys.executable, "-m", f"campaigns.localservers.{module}",
               "--host", host, "--port", str(port), *map(str, args)]
    return serving(command, host, port, log_path=log_path, cwd=REPO_ROOT)


@contextlib.contextmanager
def serving(command, host, port, log_path=None, **popen_options):
    """Run the server COMMAND, which listens on HOST:PORT, until the block ends (output to LOG_PATH).

    Yields ``(process, port)`` once the port accepts connections."""
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=stop_when_parent_dies,
                                   **popen_options)
        try:
            wait_for_port(host, port, process)
            yield process, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
