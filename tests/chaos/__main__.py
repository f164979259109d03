"""`make chaos`: play chaos seeds on throwaway PostgreSQL and Redis (scripts/devstack.py exec).

    python -m tests.chaos --seeds 50                 # seeds 1..50
    python -m tests.chaos --seeds 100 --first 201    # seeds 201..300
    python -m tests.chaos --seed 17                  # replay one seed
    python -m tests.chaos --seed-list 5,11           # these seeds
    python -m tests.chaos --seeds 20 --knobs all     # with every knob (tests/chaos/scenario.py)
    python -m tests.chaos --seeds 300 --jobs 2       # two seeds at a time, each lane on its own servers

Each seed is a pytest test (tests/chaos/test_chaos.py::test_seed); a failing one prints its seed,
scenario, what happened and the invariants it broke (with --jobs, into var/chaos/seed-N.txt). A line
per seed starts with CHAOS: the seed, ok or FAIL, its wall seconds and how long it took to settle.

--jobs N plays N lanes at once: each lane is its own `scripts/devstack.py exec` (its own throwaway
PostgreSQL and Redis on free ports, its own workers, beat and provider servers), and plays every Nth
seed. The exit status is non-zero if any seed failed or was not played.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.chaos.scenario import KNOBS

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"CHAOS seed (\d+) (ok|FAIL)")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=20, help="how many seeds to play (default 20)")
    which.add_argument("--seed", type=int, help="play this one seed")
    which.add_argument("--seed-list", help="play these seeds (\"5,11,40\")")
    parser.add_argument("--first", type=int, default=1, help="the first seed of --seeds (default 1)")
    parser.add_argument("--knobs", default="", help=f"comma-separated, or 'all': {', '.join(KNOBS)}")
    parser.add_argument("--jobs", type=int, default=1, help="seeds played at a time, each lane on its own servers")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing seed")
    args = parser.parse_args(argv)
    knobs = ",".join(KNOBS) if args.knobs == "all" else args.knobs
    unknown = set(filter(None, knobs.split(","))) - set(KNOBS)
    if unknown:
        parser.error(f"unknown knobs {', '.join(sorted(unknown))}; known: {', '.join(KNOBS)}")
    if args.seed is not None:
        seeds = [args.seed]
    elif args.seed_list:
        seeds = [int(s) for s in args.seed_list.split(",")]
    else:
        seeds = list(range(args.first, args.first + args.seeds))
    results = Path(os.environ.setdefault("CHAOS_LOG", str(ROOT / "var" / "chaos" / "results.log")))
    results.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    if args.jobs > 1 and len(seeds) > 1:
        status, lines = play_lanes(seeds, knobs, args.jobs, args.exitfirst, results)
    else:
        status, lines = play_here(seeds, knobs, args, results)
    if os.environ.get("CHAOS_LANE"):
        return status  # a lane of --jobs: its parent prints the summary
    return summarize(seeds, lines, time.monotonic() - began, results) or status


def play_here(seeds, knobs, args, results):
    """Play SEEDS in this process (one pytest session) on the servers devstack gave it."""
    import pytest

    start = results.stat().st_size if results.exists() else 0
    pytest_args = ["tests/chaos/test_chaos.py::test_seed", f"--chaos-seeds={','.join(map(str, seeds))}",
                   f"--chaos-knobs={knobs}", "-q", "-rfE", "-p", "no:cacheprovider"]
    if os.environ.get("CHAOS_BASETEMP"):
        pytest_args.append(f"--basetemp={os.environ['CHAOS_BASETEMP']}")
    if args.exitfirst:
        pytest_args.append("-x")
    if args.seed is not None:  # a replay shows the scenario and what happened, passed or not
        os.environ["CHAOS_VERBOSE"] = "1"
        pytest_args.append("-rP")
    status = pytest.main(pytest_args)
    with open(results) as f:
        f.seek(start)
        # Only this run's seeds: another `make chaos` in the same checkout appends to the same file.
        lines = [line for line in f.read().splitlines()
                 if (m := LINE.search(line)) and int(m.group(1)) in set(seeds)]
    if not os.environ.get("CHAOS_LANE"):
        print("\n" + "\n".join(lines))
    return status, lines


def play_lanes(seeds, knobs, jobs, exitfirst, results):
    """Play SEEDS in JOBS lanes; print each lane's CHAOS lines as they come."""
    lane_dir = results.parent / "lanes"
    lane_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    lanes = []
    for lane in range(jobs):
        mine = seeds[lane::jobs]
        if not mine:
            continue
        log = lane_dir / f"lane-{lane}.results"
        log.write_text("")
        out = lane_dir / f"lane-{lane}.log"
        cmd = [sys.executable, str(ROOT / "scripts" / "devstack.py"), "exec", sys.executable, "-m", "tests.chaos",
               "--seed-list", ",".join(map(str, mine)), "--knobs", knobs] + (["-x"] if exitfirst else [])
        lane_env = dict(env, CHAOS_LANE=str(lane), CHAOS_LOG=str(log), CHAOS_FAILURES=str(results.parent),
                        CHAOS_BASETEMP=str(lane_dir / f"lane-{lane}-tmp"))
        with open(out, "wb") as output:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=lane_env, stdout=output, stderr=subprocess.STDOUT)
        print(f"lane {lane}: seeds {mine[0]}..{mine[-1]} (every {jobs}th), pid {proc.pid}, output in {out}",
              flush=True)
        lanes.append((proc, log, [0]))
        time.sleep(2)  # the lanes' servers pick free ports: not at the same instant
    lines = []
    try:
        while True:
            for proc, log, seen in lanes:
                new = log.read_text().splitlines()[seen[0]:]
                seen[0] += len(new)
                for line in new:
                    print(line, flush=True)
                    with open(results, "a") as f:
                        f.write(line + "\n")
                lines += new
            if all(proc.poll() is not None for proc, _, _ in lanes):
                break
            time.sleep(1)
    except KeyboardInterrupt:
        for proc, _, _ in lanes:
            proc.terminate()
        raise
    return max(proc.returncode for proc, _, _ in lanes), lines


def summarize(seeds, lines, wall, results):
    played = {int(m.group(1)): m.group(2) for m in map(LINE.search, lines) if m}
    failed = sorted(s for s, verdict in played.items() if verdict == "FAIL")
    missing = sorted(set(seeds) - set(played))
    settles = [float(m.group(1)) for m in (re.search(r"settled in ([\d.]+) s", line) for line in lines) if m]
    fair = [float(m.group(1)) for m in (re.search(r"fair start ([\d.]+) s,", line) for line in lines) if m]
    print(f"\n{len(played)} seeds played in {wall:.0f} s, {len(played) - len(failed)} passed"
          + (f", failed: {', '.join(map(str, failed))}" if failed else "")
          + (f", not played: {', '.join(map(str, missing))}" if missing else "")
          + (f"; longest settle {max(settles):.1f} s" if settles else "")
          + (f"; fairness campaigns {len(fair)}, slowest start {max(fair):.1f} s" if fair else "")
          + f" (each line also in {results})")
    if failed:
        print("replay a failing seed with make chaos ARGS=\"--seed N\" (and its --knobs)")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
