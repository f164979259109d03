import pytest


def pytest_generate_tests(metafunc):
    """`test_seed` runs once per seed of --chaos-seeds ("1-50", "7", "3,9"); skipped without it."""
    if "chaos_seed" in metafunc.fixturenames:
        spec = metafunc.config.getoption("chaos_seeds")
        seeds = parse_seeds(spec) if spec else []
        metafunc.parametrize("chaos_seed", seeds or [pytest.param(None, marks=pytest.mark.skip(
            reason="give seeds with --chaos-seeds (make chaos)"))])


def parse_seeds(spec):
    seeds = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


@pytest.fixture
def chaos_knobs(request):
    knobs = request.config.getoption("chaos_knobs") or ""
    return [knob for knob in knobs.split(",") if knob]
