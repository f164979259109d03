"""The README and the guides in docs/ name only commands, variables, services, links and paths that exist."""

import re
import subprocess

import pytest
from django.core.management import get_commands

from tests.deploy import tools

OUR_GUIDES = ["README.md", "local-setup.md", "docker-setup.md", "campaign-examples.md", "flower-monitoring.md",
              "sendgrid-and-sender-authentication.md", "scaling.md", "troubleshooting.md", "security.md",
              "delivery-guarantees.md", "design.md"]
# Where a variable can be defined: settings, .env.example, compose files, the image's scripts, make run.
CONFIG_SOURCES = [".env.example", "mailer_project/settings.py", "docker-compose.yml", "docker-compose.prod.yml",
                  "docker-compose.pgbouncer.yml", "docker/gunicorn.conf.py", "docker/entrypoint.sh", "docker/wait_for_services.py",
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
def test_compose_services_in_the_guides_exist(name, dev_compose, prod_compose):
    services = set(re.findall(r"`(celery_\w+|mailsink)`", guide(name)))
    services |= set(re.findall(r"--scale (\w+)=", guide(name)))
    assert services <= set(dev_compose["services"]) | set(prod_compose["services"])


def test_readme_points_to_the_guides():
    readme = (tools.ROOT / "README.md").read_text()
    for name in OUR_GUIDES + ["bulk-upload.md"]:
        assert f"docs/{name}" in readme, name
    index = guide("README.md")
    for name in OUR_GUIDES[1:] + ["bulk-upload.md"]:
        assert f"]({name})" in index, name


# --- Everything a doc names is inside the repository and exists ----------------------------------

DOCS = ["README.md", *sorted(p.relative_to(tools.ROOT).as_posix() for p in (tools.ROOT / "docs").glob("*.md"))]
# Spelled in pieces so that this file does not name them itself.
OUTSIDE_THE_REPOSITORY = re.compile("|".join([re.escape(".." + "/shared"), re.escape("DESIGN" + ".md"),
                                              re.escape("/work" + "/")]))
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Made by `make run`, `make test` or the user, never committed.
GENERATED = {".venv", ".env", "var", "staticfiles"}
FILE_SUFFIXES = {"py", "md", "txt", "csv", "yml", "yaml", "conf", "sh", "ini", "html", "json", "js", "css", "example"}
PATH_LIKE = re.compile(r"(?<![\w/.$-])\.?[\w*-]+(?:[./][\w*-]+)*/?")


def tracked_files():
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=tools.ROOT, capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (tools.ROOT / name).is_file()]


def test_nothing_in_the_repository_refers_to_a_path_outside_it():
    found = []
    for name in tracked_files():
        for number, line in enumerate((tools.ROOT / name).read_bytes().decode(errors="replace").splitlines(), 1):
            match = OUTSIDE_THE_REPOSITORY.search(line)
            if match and not (name == "docs/design.md" and match.group().startswith("DESIGN")):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "the design is docs/design.md; link inside the repository:\n" + "\n".join(found)


@pytest.mark.parametrize("name", DOCS)
def test_relative_links_in_the_docs_lead_to_files_that_exist(name):
    doc = tools.ROOT / name
    targets = [target for target in MARKDOWN_LINK.findall(doc.read_text())
               if not re.match(r"[a-z][a-z0-9+.-]*:|#", target)]  # http:, mailto:, in-page anchors
    missing = [target for target in targets if not (doc.parent / target.split("#")[0]).exists()]
    assert missing == []
    assert all((doc.parent / target.split("#")[0]).resolve().is_relative_to(tools.ROOT) for target in targets)


def named_paths(text):
    """Repository paths TEXT names: `dir/`, `file.py`, `a/b.md`, `admin*.py`, and dotted modules."""
    packages = {p.parent.name for p in tools.ROOT.glob("*/__init__.py")}
    paths = []
    for token in PATH_LIKE.findall(text):
        is_file = "." in token.rsplit("/", 1)[-1] and token.rsplit(".", 1)[-1] in FILE_SUFFIXES
        if token.endswith("/") or is_file:
            paths.append(token)
        elif token.split(".")[0] in packages and "." in token and "/" not in token:
            paths.append(module_file(token))  # mailer_project.wsgi, tests.sending.test_ratelimit.test_name
    return [path for path in paths if path.strip("/").split("/")[0] not in GENERATED]


def module_file(dotted):
    """The file of the longest module DOTTED starts with (what follows names something inside it)."""
    parts = dotted.split(".")
    files = ["/".join(parts[:size]) + ".py" for size in range(len(parts), 1, -1)]
    return next((name for name in files if (tools.ROOT / name).is_file()), files[0])


def exists(path, *bases):
    return any(list(base.glob(path.rstrip("/"))) for base in bases)


def readme():
    return (tools.ROOT / "README.md").read_text()


def test_every_path_in_where_things_are_exists():
    section = re.search(r"^## Where things are\n+```\n(.*?)```", readme(), re.S | re.M).group(1)
    missing, top, entry = [], tools.ROOT, tools.ROOT
    for line in section.splitlines():
        # An entry starts a line; a sub-entry (a folder inside the entry) is indented by two spaces.
        is_sub_entry = line.startswith("  ") and not line.startswith("   ")
        if not line.startswith(" ") or is_sub_entry:
            entry = (top if is_sub_entry else tools.ROOT) / line.split()[0]
            top = top if is_sub_entry else entry
            if not entry.exists():
                missing.append(line.split()[0])
            line = line.strip()[len(line.split()[0]):]
        # A path in an entry's description is relative to the entry, or to the repository.
        missing += [path for path in named_paths(line) if not exists(path, entry, top, tools.ROOT)]
    assert missing == []


def test_every_path_in_the_readmes_code_exists():
    text = readme()
    code = re.findall(r"```\w*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text,
                                                                                          flags=re.S))
    where = re.search(r"^## Where things are\n+```\n(.*?)```", text, re.S | re.M).group(1)
    code = [snippet for snippet in code if snippet != where]
    missing = [path for snippet in code for path in named_paths(snippet) if not exists(path, tools.ROOT)]
    assert missing == []


def test_the_path_finder_sees_files_folders_globs_and_modules():
    text = ("see `docs/design.md`, campaigns/ and admin*.py; python -m campaigns.localservers.smtp_sink; e.g. CSV/Excel,"
            " .venv/bin, var/mail/, mailer_project.wsgi.application, campaigns.no_such_module")
    assert named_paths(text) == ["docs/design.md", "campaigns/", "admin*.py", "campaigns/localservers/smtp_sink.py",
                                 "mailer_project/wsgi.py", "campaigns/no_such_module.py"]
