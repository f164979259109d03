"""`make chaos`: play chaos seeds on throwaway PostgreSQL and Redis (scripts/devstack.py exec).

    python -m tests.chaos --seeds 50                 # seeds 1..50
    python -m tests.chaos --seeds 100 --first 201    # seeds 201..300
    python -m tests.chaos --seed 17                  # replay one seed
    python -m tests.chaos --seeds 20 --knobs all     # with every knob (tests/chaos/scenario.py)

Each seed is a pytest test (tests/chaos/test_chaos.py::test_seed); a failing one prints its seed,
scenario, what happened and the invariants it broke. A summary line per seed starts with CHAOS.
"""

import argparse
import os
import sys
from pathlib import Path

import pytest

from tests.chaos.scenario import KNOBS


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=20, help="how many seeds to play (default 20)")
    which.add_argument("--seed", type=int, help="play this one seed")
    parser.add_argument("--first", type=int, default=1, help="the first seed of --seeds (default 1)")
    parser.add_argument("--knobs", default="", help=f"comma-separated, or 'all': {', '.join(KNOBS)}")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing seed")
    args = parser.parse_args(argv)
    knobs = ",".join(KNOBS) if args.knobs == "all" else args.knobs
    unknown = set(filter(None, knobs.split(","))) - set(KNOBS)
    if unknown:
        parser.error(f"unknown knobs {', '.join(sorted(unknown))}; known: {', '.join(KNOBS)}")
    seeds = str(args.seed) if args.seed is not None else f"{args.first}-{args.first + args.seeds - 1}"
    results = Path(os.environ.setdefault("CHAOS_LOG", str(Path("var") / "chaos" / "results.log")))
    results.parent.mkdir(parents=True, exist_ok=True)
    start = results.stat().st_size if results.exists() else 0
    pytest_args = ["tests/chaos/test_chaos.py::test_seed", f"--chaos-seeds={seeds}", f"--chaos-knobs={knobs}",
                   "-q", "-rfE"]
    if args.exitfirst:
        pytest_args.append("-x")
    if args.seed is not None:  # a replay shows the scenario and what happened, passed or not
        os.environ["CHAOS_VERBOSE"] = "1"
        pytest_args.append("-rP")
    status = pytest.main(pytest_args)
    with open(results) as f:
        f.seek(start)
        lines = f.read().splitlines()
    print(f"\n{len(lines)} seeds played, {sum(' ok' in line for line in lines)} passed (each line also in {results}):")
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    sys.exit(main())
