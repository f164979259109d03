"""The app's layout (docs/design.md, "Where the code lives"): no import circles among its modules, only
what every part uses at the top level, and a docstring on each package saying what it holds.

Every import counts, wherever it stands: one inside a function or under TYPE_CHECKING that would close
a circle only hides it (issue 20)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "campaigns"

# What stays at the top of campaigns/: what every part uses, and what Django looks for there.
TOP_LEVEL_MODULES = {"__init__", "apps", "exceptions", "models", "services", "states", "stats", "urls"}
SUBPACKAGES = {"admin", "api", "audience", "deliverability", "engagement", "experiments", "management", "message",
               "migrations", "notifications", "operations", "security", "sending", "tasks", "templatetags", "views",
               "webhooks"}


def app_modules(root=ROOT, package="campaigns"):
    """{dotted name: path} of every module of the app but its migrations."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if "migrations" in parts:
            continue
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_edges(modules):
    """{module: set of the app's modules it imports}, from every import statement in its source."""
    def known(name):
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[:len(here) - (node.level - 1)]
                    base = ".".join(here + ([base] if base else []))
                for alias in node.names:
                    # `from package import submodule` depends on the submodule; a name defined in the
                    # package itself makes the package a dependency.
                    targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            for target in targets:
                found = known(target) if target.startswith("campaigns") else None
                if found and found != name:
                    edges[name].add(found)
    return edges


def circles(edges):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_no_module_of_the_app_sits_in_an_import_circle():
    assert circles(import_edges(app_modules())) == []


def test_the_circle_finder_sees_a_circle_hidden_inside_a_function(tmp_path):
    package = tmp_path / "campaigns"
    (package / "sending").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sending" / "__init__.py").write_text('"""Sending."""\n')
    (package / "sending" / "pipeline.py").write_text("from campaigns.sending import routing\n")
    (package / "sending" / "routing.py").write_text(
        "def later():\n    from campaigns.sending.pipeline import dispatch  # hides the circle\n")
    (package / "models.py").write_text("from campaigns.sending import routing\n")

    assert circles(import_edges(app_modules(tmp_path))) == [
        ["campaigns.sending.pipeline", "campaigns.sending.routing"]]


def test_the_circle_finder_sees_a_circle_through_a_package_s_own_names(tmp_path):
    package = tmp_path / "campaigns"
    package.mkdir()
    (package / "__init__.py").write_text("from campaigns.models import Campaign\n")
    (package / "models.py").write_text("from campaigns import settings_value\n")

    assert circles(import_edges(app_modules(tmp_path))) == [["campaigns", "campaigns.models"]]


def test_the_top_level_keeps_only_what_every_part_uses():
    modules = {path.stem for path in APP.glob("*.py")}
    packages = {path.name for path in APP.iterdir() if (path / "__init__.py").exists()}
    assert modules == TOP_LEVEL_MODULES
    assert packages == SUBPACKAGES


@pytest.mark.parametrize("package", sorted(SUBPACKAGES - {"migrations"}))
def test_each_subpackage_says_what_it_holds_and_what_it_may_import(package):
    docstring = ast.get_docstring(ast.parse((APP / package / "__init__.py").read_text()))
    assert docstring, f"campaigns/{package}/__init__.py has no docstring"
    if package in {"audience", "engagement", "experiments", "message", "operations", "security", "sending"}:
        assert "may import" in docstring.lower(), f"campaigns/{package}/__init__.py does not say what it may import"
