"""Run a local server as a child process for the length of a `with` block."""

import contextlib
import ctypes
import signal
import subprocess
import sys
from pathlib import Path

from localservers.ports import free_port, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def stop_when_parent_dies():
    """In the child (Linux): SIGTERM when the starting process dies, so no server outlives a killed run."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def running(module, *args, host="127.0.0.1", port=None, log_path=None):
    """Run ``python -m localservers.<module>`` until the block ends.

    Yields ``(process, port)`` once the port accepts connections.
    """
    port = port or free_port(host)
    command = [sys.executable, "-m", f"localservers.{module}",
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
            wait_for_port(port, process, name=" ".join(map(str, command)), host=host, log_path=log_path, timeout=15)
            yield process, port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
