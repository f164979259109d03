"""Starts the local PostgreSQL and Redis that `make run` and `make test` need, then runs a command.

    python scripts/devstack.py run            # persistent servers under var/, then the whole stack
    python scripts/devstack.py test [ARGS]    # throwaway servers on free ports, then pytest (see run_tests)
    python scripts/devstack.py exec CMD ...   # throwaway servers, then CMD (benchmarks use this)
    python scripts/devstack.py demo           # throwaway servers, workers and sink, then one whole campaign

DATABASE_URL or REDIS_URL in the environment skip starting that server. PostgreSQL comes from the
system binaries (PG_BIN, default /usr/lib/postgresql/15/bin); Redis is Debian's redis-server,
installed with apt-get when missing and running as root.
"""

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script (scripts/ is sys.path[0]): the repository root makes localservers importable. Its port
# helpers need only the standard library, so they work before anything is installed or configured.
sys.path.insert(1, str(ROOT))
from localservers.ports import free_port, wait_for_port  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
DB_NAME = "mailer"
DB_USER = "mailer"


def say(message):
    print(f"==> {message}", flush=True)


def die(message):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def as_postgres_user(cmd):
    """PostgreSQL refuses to run as root: run its tools as the `postgres` system user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class Postgres:
    def __init__(self, datadir, port, throwaway):
        self.datadir = Path(datadir)
        self.port = port
        self.throwaway = throwaway
        self.log = self.datadir.parent / "postgres.log"

    @property
    def url(self):
        return f"postgres://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def _pg(self, tool, *args, **kwargs):
        return subprocess.run(as_postgres_user([str(PG_BIN / tool), *args]), **kwargs)

    def start(self):
        if not (PG_BIN / "initdb").exists():
            die(f"PostgreSQL binaries not found in {PG_BIN}: install Debian's postgresql-15 or set PG_BIN.")
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir.parent, "postgres", "postgres")
        if not (self.datadir / "PG_VERSION").exists():
            say(f"Initialising PostgreSQL in {self.datadir}")
            self._pg("initdb", "-D", str(self.datadir), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
                     "--locale=C.UTF-8", check=True, stdout=subprocess.DEVNULL)
        if self._pg("pg_ctl", "-D", str(self.datadir), "status", stdout=subprocess.DEVNULL).returncode == 0:
            say(f"PostgreSQL already running from {self.datadir}")
            return self._ensure_database()
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=500"
        if self.throwaway:
            # Durability buys nothing for a database deleted after the run.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        say(f"Starting PostgreSQL on 127.0.0.1:{self.port}")
        result = self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                          "start", stdout=subprocess.DEVNULL)
        if result.returncode != 0:
            die(f"PostgreSQL did not start; see {self.log}")
        self._ensure_database()

    def _ensure_database(self):
        exists = subprocess.run(
            [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        if not exists:
            subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER,
                            DB_NAME], check=True)

    def stop(self):
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop",
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Redis:
    def __init__(self, datadir, port, throwaway):
        self.datadir = Path(datadir)
        self.port = port
        self.throwaway = throwaway
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def ensure_installed():
        if shutil.which("redis-server"):
            return
        if os.geteuid() != 0:
            die("redis-server is not installed. Install it with `sudo apt-get install redis-server`, "
                "or set REDIS_URL to a Redis you already run.")
        say("Installing Debian's redis-server (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env,
                       stdout=subprocess.DEVNULL)

    def start(self):
        self.ensure_installed()
        self.datadir.mkdir(parents=True, exist_ok=True)
        persistence = ["--save", "", "--appendonly", "no"] if self.throwaway else ["--appendonly", "yes"]
        say(f"Starting Redis on 127.0.0.1:{self.port}")
        # A session of its own, so the terminal's Ctrl-C reaches the app first and Redis stops last.
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.datadir),
             "--daemonize", "no", "--protected-mode", "yes", "--databases", "32", *persistence],
            stdout=open(self.datadir / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_for_port(self.port, self.proc, name="Redis", log_path=self.datadir / "redis.log", timeout=30)

    def stop(self):
        # Whatever Redis listens on our port goes (a test may have restarted it in place).
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_services(base_dir, throwaway):
    """Start whichever of PostgreSQL and Redis has no URL in the environment; return the env to use."""
    env = dict(os.environ)
    stoppers = []
    if not env.get("DATABASE_URL"):
        port = free_port() if throwaway else int(env.get("PG_PORT", 5433))
        pg = Postgres(Path(base_dir) / "postgres" / "data", port, throwaway)
        pg.start()
        stoppers.append(pg.stop)
        env["DATABASE_URL"] = pg.url
    if not env.get("REDIS_URL"):
        port = free_port() if throwaway else int(env.get("REDIS_PORT", 6380))
        redis = Redis(Path(base_dir) / "redis", port, throwaway)
        redis.start()
        stoppers.append(redis.stop)
        env["REDIS_URL"] = redis.url

    def stop_all():
        for stop in reversed(stoppers):
            stop()

    atexit.register(stop_all)
    return env


def manage(env, *args):
    subprocess.run([str(VENV_BIN / "python"), "manage.py", *args], cwd=ROOT, env=env, check=True)


def local_flower_password(path):
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def run_stack():
    env = start_services(ROOT / "var", throwaway=False)
    env.setdefault("DEBUG", "True")
    env.setdefault("WEB_PORT", "8000")
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("MAIL_SINK_PORT", "1025")
    env.setdefault("FLOWER_USER", "flower-ops")
    # Flower can start any task and stop workers: even locally its login is a random one, made once and
    # kept in var/flower-password (printed below), unless FLOWER_PASSWORD is set.
    env.setdefault("FLOWER_PASSWORD", local_flower_password(ROOT / "var" / "flower-password"))
    # Flower reads its login from the environment, so it never shows in a process list.
    env.setdefault("FLOWER_BASIC_AUTH", f"{env['FLOWER_USER']}:{env['FLOWER_PASSWORD']}")
    env.setdefault("MAIL_SINK_DIR", str(ROOT / "var" / "mail"))
    env.setdefault("SITE_URL", f"http://127.0.0.1:{env['WEB_PORT']}")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    manage(env, "migrate", "--noinput")
    manage(env, "load_email_templates")
    manage(env, "ensure_dev_superuser")
    print(
        f"\n  Admin:   http://127.0.0.1:{env['WEB_PORT']}/admin/   (login admin / admin)\n"
        f"  Flower:  http://127.0.0.1:{env['FLOWER_PORT']}/   (login {env['FLOWER_USER']} / {env['FLOWER_PASSWORD']})\n"
        f"  Mail:    messages land in {env['MAIL_SINK_DIR']}/ (SMTP sink on 127.0.0.1:{env['MAIL_SINK_PORT']})\n"
        f"  Stop everything with Ctrl-C.\n",
        flush=True,
    )
    honcho = subprocess.Popen([str(VENV_BIN / "honcho"), "start", "-f", "Procfile"], cwd=ROOT, env=env)
    try:
        return honcho.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to honcho too; give its processes time to stop.
        return honcho.wait()


def throwaway_services(prefix):
    """Fresh PostgreSQL and Redis in a temporary directory that goes when this process ends."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    if os.geteuid() == 0:
        os.chmod(tmp, 0o755)  # the postgres user must reach its data directory inside
    atexit.register(shutil.rmtree, tmp, True)
    env = start_services(tmp, throwaway=True)
    env.setdefault("DEBUG", "True")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return tmp, env


def run_demo():
    """A whole campaign on throwaway servers: workers and sink in the background, then demo_campaign."""
    tmp, env = throwaway_services("mailer-demo-")
    env["MAIL_SINK_PORT"] = str(free_port())
    env["MAIL_SINK_DIR"] = str(ROOT / "var" / "demo-mail")
    shutil.rmtree(env["MAIL_SINK_DIR"], ignore_errors=True)
    manage(env, "migrate", "--noinput", "-v", "0")
    say("Starting the scheduler and sender workers and the mail sink")
    background = subprocess.Popen([str(VENV_BIN / "honcho"), "start", "-f", "Procfile", "scheduler", "sender", "sink"],
                                  cwd=ROOT, env=env, stdout=open(Path(tmp) / "processes.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)

    def stop_background():
        if background.poll() is None:
            os.killpg(background.pid, signal.SIGTERM)
            background.wait(30)

    atexit.register(stop_background)
    wait_for_port(int(env["MAIL_SINK_PORT"]), background, name="the mail sink", log_path=Path(tmp) / "processes.log",
                  timeout=30)
    return subprocess.run([str(VENV_BIN / "python"), "manage.py", "demo_campaign"], cwd=ROOT, env=env).returncode


def run_with_throwaway_services(command):
    """Run COMMAND with DATABASE_URL and REDIS_URL pointing at fresh servers, removed afterwards."""
    _, env = throwaway_services("mailer-")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(command, cwd=ROOT, env=env).returncode


# Most tests wait on worker processes, servers and rate-limit windows, not the CPU, so a 2-core machine
# runs more processes than cores; 3 and 6 are still to be compared with 4 on a quiet machine.
DEFAULT_TEST_PROCESSES = 4
NO_TESTS_COLLECTED = 5  # pytest's exit code when nothing was selected


def run_tests(args):
    """pytest on throwaway servers. With no ARGS (or TEST_PROCESSES=N given): the tests not marked `serial`
    in N pytest-xdist processes (TEST_PROCESSES, default DEFAULT_TEST_PROCESSES), then the `serial` ones
    alone in one process; the exit status is the first failure's. With ARGS (one file, one test) and no
    TEST_PROCESSES: one plain pytest run of ARGS. TEST_PROCESSES=1 runs everything in one process."""
    processes = os.environ.get("TEST_PROCESSES")
    pytest = [str(VENV_BIN / "python"), "-m", "pytest"]
    if processes is None and args:
        return run_with_throwaway_services([*pytest, *args])
    processes = int(processes or DEFAULT_TEST_PROCESSES)
    if processes <= 1:
        return run_with_throwaway_services([*pytest, *args])
    _, env = throwaway_services("mailer-")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # The screenshots of the browser tests go to one directory for the whole run: emptied once, here.
    shutil.rmtree(ROOT / "test-artifacts" / "screenshots", ignore_errors=True)
    env["TEST_SCREENSHOTS_KEEP"] = "1"
    say(f"Running the tests in {processes} processes, then the serial ones alone")
    # Tests go out two at a time to whichever process is free (not in big chunks decided up front), so
    # the processes finish together; the slow ones are sent first (tests/support/parallel.py).
    parallel = subprocess.run([*pytest, "-n", str(processes), "--maxschedchunk", "2", "-m", "not serial", *args],
                              cwd=ROOT, env=env)
    say("Running the serial tests (marked `serial`) alone")
    serial = subprocess.run([*pytest, "-m", "serial", *args], cwd=ROOT, env=env)
    codes = [code for code in (parallel.returncode, serial.returncode) if code not in (0, NO_TESTS_COLLECTED)]
    if codes:
        return codes[0]
    return NO_TESTS_COLLECTED if parallel.returncode == serial.returncode == NO_TESTS_COLLECTED else 0


def exit_on_sigterm(*_):
    """Exit (the atexit hook stops the servers) and let no later SIGTERM cut that short: `timeout`, a
    supervisor or `kill -- -PGID` signal the whole process group, whose other members pass it on, and a
    second SIGTERM in the middle of the stop left PostgreSQL running."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main(argv):
    if not argv or argv[0] not in ("run", "test", "exec", "demo"):
        die("usage: devstack.py run | demo | test [pytest args] | exec COMMAND [ARGS]")
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        return run_command(argv)
    except RuntimeError as error:  # a server that did not start (wait_for_port says which and why)
        die(str(error))


def run_command(argv):
    if argv[0] == "run":
        return run_stack()
    if argv[0] == "demo":
        return run_demo()
    if argv[0] == "exec":
        return run_with_throwaway_services(argv[1:])
    return run_tests(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
