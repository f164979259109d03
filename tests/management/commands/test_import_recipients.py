"""`manage.py import_recipients` as a user runs it: a process, its exit code and its last line."""

import subprocess
import sys

import pytest

from campaigns.models import Recipient
from tests.audience.importing.conftest import make_csv, make_xlsx, media_root  # noqa: F401  (fixtures)
from tests.support.factories import CampaignFactory, SuppressionFactory
from tests.support.workers import ROOT, service_env

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(*args, media_root):
    return subprocess.run([sys.executable, "manage.py", "import_recipients", *map(str, args)], cwd=ROOT,
                          env=service_env(MEDIA_ROOT=media_root), capture_output=True, text=True, timeout=300)


def test_imports_and_ends_with_the_summary_line(make_csv, media_root):
    campaign = CampaignFactory()
    SuppressionFactory(email="sup@example.com")
    path = make_csv([["email", "name"], ["a@example.com", "A"], ["A@example.com", "dup"], ["sup@example.com", "S"],
                     ["bad@", "B"]])
    result = run_command(campaign.pk, path, media_root=media_root)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "imported=2 duplicates=1 invalid=1 suppressed=1"
    assert any(line.startswith("rejected rows: ") and line.endswith(".csv") for line in lines)
    assert Recipient.objects.filter(campaign=campaign).count() == 2
    assert "%|" not in result.stderr  # no progress bar when stderr is not a terminal

    again = run_command(campaign.pk, path, media_root=media_root)
    assert again.stdout.strip().splitlines()[-1] == "imported=0 duplicates=3 invalid=1 suppressed=0"


def test_a_sheet_can_be_chosen(make_xlsx, media_root):
    campaign = CampaignFactory()
    path = make_xlsx({"First": [["email"], ["a@example.com"]], "Second": [["email"], ["b@example.com"]]})
    result = run_command(campaign.pk, path, "--sheet", "Second", media_root=media_root)
    assert result.stdout.strip().splitlines()[-1] == "imported=1 duplicates=0 invalid=0 suppressed=0"
    assert list(Recipient.objects.filter(campaign=campaign).values_list("email", flat=True)) == ["b@example.com"]


@pytest.mark.parametrize("content, reason", [
    (b"", "The file is empty."),
    (b"name,phone\nAna,1\n", "The file has no email column (columns found: 'name', 'phone'); name one column 'email'."),
])
def test_a_file_that_cannot_be_imported_exits_non_zero_with_one_line(tmp_path, media_root, content, reason):
    campaign = CampaignFactory()
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    result = run_command(campaign.pk, path, media_root=media_root)
    assert result.returncode != 0
    assert result.stderr.strip() == f"CommandError: {reason}"
    assert not Recipient.objects.filter(campaign=campaign).exists()


def test_unknown_campaign_and_missing_file(tmp_path, media_root):
    result = run_command(999999, tmp_path / "x.csv", media_root=media_root)
    assert (result.returncode, result.stderr.strip()) == (1, "CommandError: There is no campaign with id 999999.")
    result = run_command(CampaignFactory().pk, tmp_path / "missing.csv", media_root=media_root)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("CommandError: Cannot read")
