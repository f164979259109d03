"""Issue 23, item 5: Schemathesis against the live API, from its own OpenAPI schema, with a superuser's
token: the examples, coverage, fuzzing and stateful phases, bounded in time. It must find no 5xx, no answer
that breaks the schema, and no operation that ignores authentication."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.models import Campaign
from tests.admin.conftest import add_logs, add_recipients
from tests.api.conftest import client_for
from tests.support.factories import CampaignFactory, SendingAccountFactory, pool_of

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,ignored_auth")


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_no_schema_violation_and_no_ignored_auth(
        live_server, settings, smtp_sink_server, clean_broker, tmp_path):
    settings.API_RATE_LIMIT = "100000/min"
    settings.TEST_EMAILS_PER_USER_PER_HOUR = 100000
    client = client_for("superuser")
    draft = CampaignFactory()
    add_recipients(draft, 3)
    sent = CampaignFactory(status="completed", started_at="2026-01-01T00:00:00Z")
    add_logs(sent, ["sent", "failed", "unknown"])
    Campaign.objects.filter(pk=sent.pk).update(sent_count=1, failed_count=1, unknown_count=1)  # as the ledger keeps them
    pool_of(SendingAccountFactory())
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(client.get("/api/schema/?format=json").json()))

    # Two runs, each with its own budget: in one run, fuzzing repeats until the whole budget is spent,
    # and on a loaded machine the stateful phase was left no time at all. (Coverage, too, stops at the
    # budget: it needs about half of the first run's to reach every operation on a loaded machine.)
    outputs = {}
    for phases, budget in (("examples,coverage,fuzzing", 60), ("stateful", 20)):
        run = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", str(schema), "--url", live_server.url,
             "-H", f"Authorization: Bearer {client.token}", "--phases", phases,
             "--checks", CHECKS, "--max-examples", "15", "--max-time", str(budget), "--seed", "23", "--workers", "1",
             "--request-timeout", "30", "--no-color", "--suppress-health-check", "all", "--warnings", "off"],
            capture_output=True, text=True, timeout=400, cwd=tmp_path)  # its cache stays out of the repository
        output = outputs[phases] = run.stdout + run.stderr
        (tmp_path / f"schemathesis-{phases}.txt").write_text(output)
        print(output[-3000:])
        assert run.returncode == 0, output[-8000:]
    tested = int(re.search(r"Tested: (\d+)", outputs["examples,coverage,fuzzing"]).group(1))
    cases = int(re.search(r"(\d+) generated", outputs["examples,coverage,fuzzing"]).group(1))
    assert tested == len(re.findall(r'"operationId"', schema.read_text())) and cases > tested
    for phase, phases in (("Coverage", "examples,coverage,fuzzing"), ("Fuzzing", "examples,coverage,fuzzing"),
                          ("Stateful", "stateful")):
        assert f"✅ {phase}" in outputs[phases], outputs[phases][-3000:]
