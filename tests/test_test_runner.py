"""`python manage.py test LABEL` takes Django's labels: an app, dotted modules and tests, or pytest paths."""

import subprocess
import sys

import pytest

from mailer_project.test_runner import ROOT, UnknownTestLabel, pytest_path


@pytest.fixture
def tree(tmp_path):
    for name in ["tests/sending/test_ratelimit.py", "tests/sending/scripted_smtp.py", "tests/test_states.py",
                 "tests/support/factories.py", "campaigns/sending/ratelimit.py"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_an_app_label_runs_the_suite_that_mirrors_the_app(tree):
    assert pytest_path("campaigns", root=tree) == "tests"


@pytest.mark.parametrize("label, path", [
    ("tests", "tests"),
    ("tests.sending", "tests/sending"),
    ("tests.sending.test_ratelimit", "tests/sending/test_ratelimit.py"),
    ("tests.sending.test_ratelimit.test_name", "tests/sending/test_ratelimit.py::test_name"),
    ("tests.sending.test_ratelimit.TestBucket.test_name", "tests/sending/test_ratelimit.py::TestBucket::test_name"),
    ("tests/sending/", "tests/sending/"),
    ("tests/test_states.py::test_pause", "tests/test_states.py::test_pause"),
])
def test_dotted_labels_and_paths_map_to_their_files(tree, label, path):
    assert pytest_path(label, root=tree) == path


@pytest.mark.parametrize("label", [
    "tests.no_such_module",
    "tests.sending.no_such_module.test_name",
    "tests.sending.scripted_smtp",       # a helper, not a test module
    "tests.support",                     # a folder without test modules
    "campaigns.sending",                 # app code: its tests are under tests/
    "tests/no_such_file.py",
    "tests/support/factories.py::test_x",
    "not a label",
])
def test_a_label_that_names_no_tests_is_refused_with_its_name(tree, label):
    with pytest.raises(UnknownTestLabel, match=f"No tests match the label '{label}'"):
        pytest_path(label, root=tree)


def manage_test(*labels):
    return subprocess.run([sys.executable, "manage.py", "test", *labels], cwd=ROOT, capture_output=True, text=True)


def test_manage_py_test_with_an_unknown_label_fails_and_says_why():
    result = manage_test("tests.sending.test_no_such_module")
    assert result.returncode != 0
    assert "No tests match the label 'tests.sending.test_no_such_module'" in result.stderr


def test_manage_py_test_runs_the_test_a_dotted_label_names():
    result = manage_test("tests.test_test_runner.test_an_app_label_runs_the_suite_that_mirrors_the_app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
