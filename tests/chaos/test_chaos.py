"""The chaos run as pytest tests: `test_ci_seed` plays the fixed CI seeds inside `make test` (marked
`chaos`: -m chaos selects them, -m "not chaos" leaves them out); `test_seed` plays the seeds given
with --chaos-seeds (what `make chaos` runs, tests/chaos/__main__.py) and is skipped without them.

A failing seed prints the seed, its knobs, the scenario, what was done when, and each invariant it
broke; `make chaos ARGS="--seed N"` plays it again.
"""

import os
import time

import pytest

from tests.chaos import invariants, scenario
from tests.chaos.run import play
from tests.chaos.stack import dump, servers

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

# Short scenarios (fault phases of 8 to 10 s, settled within seconds; about 25 s each) that cover between
# them: imports through the imports worker, A/B tests with a variant first written without an unsubscribe
# link (refused, then fixed) and their web versions, the fairness draw (a slow pool, a campaign with room
# started while it waits), a follow-up; SIGKILL of a sender and of the scheduler,
# pg_terminate_backend; staff pause/resume, pick a winner, retry failed, resend unknown.
CI_SEEDS = [179, 197, 240]


@pytest.fixture(scope="session")
def chaos_servers(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("chaos-servers")) as found:
        yield found


def play_and_check(seed, knobs, chaos_servers, start_worker, worker_env, settings, tmp_path):
    began = time.monotonic()
    drawn = scenario.draw(seed, knobs)
    run = play(drawn, chaos_servers, worker_env, settings, tmp_path)
    broken = invariants.check(run)
    settle = "never" if run.settle_seconds is None else f"{run.settle_seconds:.1f} s"
    fair = ""
    if run.fair_campaign:
        fair = (f", fair start {'never' if run.fair_start_seconds is None else f'{run.fair_start_seconds:.1f} s'}"
                + ("" if run.fair_judged else " (not judged: a crash in its window)"))
    idle = "-" if run.idle_cpu_seconds is None else f"{run.idle_cpu_seconds:.2f}"
    report = (f"seed {seed} {'FAIL' if broken else 'ok'} {time.monotonic() - began:.0f} s wall, settled in "
              f"{settle}{fair}, senders queue at most {run.max_senders_queue} ({run.batches_made} batches), idle "
              f"CPU {idle} s, knobs {','.join(drawn.knobs) or '-'}")
    line = f"CHAOS {report}{' BROKEN ' + ','.join(broken) if broken else ''}"
    print(line)
    if os.environ.get("CHAOS_LOG"):  # make chaos's summary (tests/chaos/__main__.py)
        with open(os.environ["CHAOS_LOG"], "a") as log:
            log.write(line + "\n")
    if os.environ.get("CHAOS_VERBOSE"):
        print(f"scenario: {dump(drawn.describe())}\nwhat happened:\n" + "\n".join(run.trace))
    if broken:
        failure = (f"chaos {report}\nreplay: make chaos ARGS=\"--seed {seed}"
                    + (f" --knobs {','.join(drawn.knobs)}" if drawn.knobs else "") + "\"\n"
                    f"scenario: {dump(drawn.describe())}\nwhat happened:\n" + "\n".join(run.trace)
                    + "\ninvariants broken:\n" + dump(broken))
        if os.environ.get("CHAOS_FAILURES"):  # make chaos --jobs: the lanes' output is not shown
            with open(os.path.join(os.environ["CHAOS_FAILURES"], f"seed-{seed}.txt"), "w") as f:
                f.write(failure + "\n")
        pytest.fail(failure, pytrace=False)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_ci_seed(seed, chaos_servers, start_worker, worker_env, settings, tmp_path):
    play_and_check(seed, (), chaos_servers, start_worker, worker_env, settings, tmp_path)


def test_seed(chaos_seed, chaos_knobs, chaos_servers, start_worker, worker_env, settings, tmp_path):
    play_and_check(chaos_seed, chaos_knobs, chaos_servers, start_worker, worker_env, settings, tmp_path)
