"""Lets `python manage.py test` run the pytest suite, so there is one suite and one runner."""


class PytestTestRunner:
    def __init__(self, verbosity=1, failfast=False, keepdb=False, **kwargs):
        self.verbosity = verbosity
        self.failfast = failfast
        self.keepdb = keepdb

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--keepdb", action="store_true", help="Preserve the test database between runs.")

    def run_tests(self, test_labels, **kwargs):
        import pytest

        argv = []
        if self.verbosity == 0:
            argv.append("--quiet")
        elif self.verbosity > 1:
            argv.append("-" + "v" * (self.verbosity - 1))
        if self.failfast:
            argv.append("--exitfirst")
        if self.keepdb:
            argv.append("--reuse-db")
        argv.extend(test_labels)  # pytest node ids, e.g. tests/test_states.py::test_pause
        return pytest.main(argv)
