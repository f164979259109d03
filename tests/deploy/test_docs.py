"""The guides in docs/ name only commands, variables and services that exist."""

import re

import pytest
from django.core.management import get_commands

from tests.deploy import tools

OUR_GUIDES = ["README.md", "local-setup.md", "docker-setup.md", "campaign-examples.md", "flower-monitoring.md",
              "sendgrid-and-sender-authentication.md", "scaling.md", "troubleshooting.md", "security.md",
              "delivery-guarantees.md"]
# Where a variable can be defined: settings, .env.example, compose files, the image's scripts, make run.
CONFIG_SOURCES = [".env.example", "mailer_project/settings.py", "docker-compose.yml", "docker-compose.prod.yml",
                  "docker/gunicorn.conf.py", "docker/entrypoint.sh", "docker/wait_for_services.py",
                  "scripts/devstack.py", "Procfile"]


def guide(name):
    return (tools.ROOT / "docs" / name).read_text()


@pytest.mark.parametrize("name", OUR_GUIDES)
def test_management_commands_in_the_guides_exist(name):
    commands = set(re.findall(r"manage\.py (\w+)", guide(name)))
    assert commands <= set(get_commands()), commands - set(get_commands())


@pytest.mark.parametrize("name", OUR_GUIDES)
def test_variables_in_the_guides_are_read_somewhere(name):
    known = "\n".join((tools.ROOT / source).read_text() for source in CONFIG_SOURCES)
    variables = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)", guide(name)))
    assert {v for v in variables if v not in known} == set()


@pytest.mark.parametrize("name", OUR_GUIDES)
def test_compose_services_in_the_guides_exist(name, dev_compose):
    services = set(re.findall(r"`(celery_\w+|mailsink)`", guide(name)))
    services |= set(re.findall(r"--scale (\w+)=", guide(name)))
    assert services <= set(dev_compose["services"])


def test_readme_points_to_the_guides():
    readme = (tools.ROOT / "README.md").read_text()
    for name in OUR_GUIDES + ["bulk-upload.md"]:
        assert f"docs/{name}" in readme, name
    index = guide("README.md")
    for name in OUR_GUIDES[1:] + ["bulk-upload.md"]:
        assert f"]({name})" in index, name
