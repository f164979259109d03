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

# Moderate scenarios that pass on correct code and avoid the defects being fixed on other branches
# (no knobs), chosen for short fault phases and to cover between them: SMTP refusals of us (535),
# 451s, drops and hangs, SendGrid 504-after-accepting, 429 and hangs, a pool of SMTP and SendGrid
# accounts with per-second and per-day limits, A/B tests and a segment; pg_terminate_backend, SIGKILL
# of the scheduler, SIGTERM of a sender; staff pause/resume, cancel and retry failed.
CI_SEEDS = [4, 8, 12]


@pytest.fixture(scope="session")
def chaos_servers(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("chaos-servers")) as found:
        yield found


def play_and_check(seed, knobs, chaos_servers, start_worker, worker_env, settings, tmp_path):
    began = time.monotonic()
    drawn = scenario.draw(seed, knobs)
    run = play(drawn, chaos_servers, start_worker, worker_env, settings, tmp_path)
    broken = invariants.check(run)
    report = (f"seed {seed} knobs {','.join(drawn.knobs) or '-'} ({time.monotonic() - began:.0f} s): settled in "
              f"{run.settle_seconds if run.settle_seconds is None else round(run.settle_seconds, 1)} s, "
              f"senders queue at most {run.max_senders_queue} ({run.batches_made} batches), idle CPU "
              f"{run.idle_cpu_seconds if run.idle_cpu_seconds is None else round(run.idle_cpu_seconds, 2)} s")
    line = f"CHAOS {report}{' BROKEN ' + ','.join(broken) if broken else ' ok'}"
    print(line)
    if os.environ.get("CHAOS_LOG"):  # make chaos's summary (tests/chaos/__main__.py)
        with open(os.environ["CHAOS_LOG"], "a") as log:
            log.write(line + "\n")
    if os.environ.get("CHAOS_VERBOSE"):
        print(f"scenario: {dump(drawn.describe())}\nwhat happened:\n" + "\n".join(run.trace))
    if broken:
        pytest.fail(f"chaos {report}\nreplay: make chaos ARGS=\"--seed {seed}"
                    + (f" --knobs {','.join(drawn.knobs)}" if drawn.knobs else "") + "\"\n"
                    f"scenario: {dump(drawn.describe())}\nwhat happened:\n" + "\n".join(run.trace)
                    + "\ninvariants broken:\n" + dump(broken), pytrace=False)


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_ci_seed(seed, chaos_servers, start_worker, worker_env, settings, tmp_path):
    play_and_check(seed, (), chaos_servers, start_worker, worker_env, settings, tmp_path)


def test_seed(chaos_seed, chaos_knobs, chaos_servers, start_worker, worker_env, settings, tmp_path):
    play_and_check(chaos_seed, chaos_knobs, chaos_servers, start_worker, worker_env, settings, tmp_path)
