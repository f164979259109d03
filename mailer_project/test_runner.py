"""Lets `python manage.py test [LABEL ...]` run the pytest suite, so there is one suite and one runner.

Django-style labels are mapped to pytest paths before pytest starts:

    campaigns                                  the app's tests: the suite in tests/, which mirrors the app
    tests.sending                              tests/sending/
    tests.sending.test_ratelimit               tests/sending/test_ratelimit.py
    tests.sending.test_ratelimit.test_name     tests/sending/test_ratelimit.py::test_name
    tests/test_states.py::test_pause           pytest's own node ids pass through

A label that names nothing runnable is an error with the label in the message, never an empty run.
"""

from fnmatch import fnmatch
from pathlib import Path

from django.core.management import CommandError

ROOT = Path(__file__).resolve().parent.parent
SUITE = "tests"  # pytest.ini's testpaths
TEST_FILES = "test_*.py"  # pytest.ini's python_files


class UnknownTestLabel(CommandError):
    pass


def pytest_path(label, root=ROOT, project_apps=("campaigns",)):
    """The pytest path or node id that LABEL names, relative to ROOT; UnknownTestLabel when it names none."""
    if label in project_apps:
        return SUITE
    if "/" in label or "::" in label or label.endswith(".py"):
        return _node_id(label, root)
    parts = label.split(".")
    if all(part.isidentifier() for part in parts):
        for size in range(len(parts), 0, -1):
            path = _test_path(Path(*parts[:size]), root)
            if path and (path.suffix == ".py" or size == len(parts)):
                return "::".join([path.as_posix(), *parts[size:]])
    raise UnknownTestLabel(f"No tests match the label {label!r}: give an app (campaigns), a dotted test module "
                           f"such as tests.sending.test_ratelimit[.test_name], or a path under {SUITE}/.")


def _node_id(label, root):
    path, _, rest = label.partition("::")
    if _test_path(Path(path.rstrip("/")), root, with_suffix=False) is None:
        raise UnknownTestLabel(f"No tests match the label {label!r}: {path} is not a test module or a folder "
                               f"holding any.")
    return label


def _test_path(path, root, with_suffix=True):
    """PATH (or PATH.py) when it is a test module or a folder holding one, else None."""
    module = path.with_name(path.name + ".py") if with_suffix else path
    if (root / module).is_file() and fnmatch(module.name, TEST_FILES):
        return module
    if (root / path).is_dir() and any((root / path).rglob(TEST_FILES)):
        return path
    return None


class PytestTestRunner:
    def __init__(self, verbosity=1, failfast=False, keepdb=False, test_name_patterns=None, **kwargs):
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb
        self.test_name_patterns = test_name_patterns or []

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--keepdb", action="store_true", help="Preserve the test database between runs.")
        parser.add_argument("-k", action="append", dest="test_name_patterns",
                            help="Only run tests whose name matches this pytest -k expression (repeatable).")

    def run_tests(self, test_labels, **kwargs):
        import pytest
        from django.apps import apps

        project_apps = [config.name for config in apps.get_app_configs() if Path(config.path).is_relative_to(ROOT)]
        paths = [pytest_path(label, project_apps=project_apps) for label in test_labels]
        argv = []
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity > 1:
            argv.append("-" + "v" * (self.verbosity - 1))
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        if self.test_name_patterns:
            argv.extend(["-k", " or ".join(f"({pattern})" for pattern in self.test_name_patterns)])
        argv.extend(["--rootdir", str(ROOT), *(str(ROOT / path) for path in paths)])
        return pytest.main(argv)
