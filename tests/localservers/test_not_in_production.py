"""The local stand-in servers are development and test tooling: production code never imports them."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_CODE = ("campaigns", "mailer_project", "docker")


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value)


def localservers_imports(directories):
    return [f"{path.relative_to(ROOT)}: {module}"
            for directory in directories for path in sorted((ROOT / directory).rglob("*.py"))
            for module in imported_modules(path) if module.split(".")[0] == "localservers"]


def test_production_code_never_imports_the_local_servers():
    assert localservers_imports(PRODUCTION_CODE) == []


def test_the_check_finds_an_import_of_the_local_servers(tmp_path, monkeypatch):
    package = tmp_path / "app"
    package.mkdir()
    (package / "a.py").write_text("import localservers.smtp_sink\n")
    (package / "b.py").write_text("from localservers.ports import free_port\n")
    (package / "c.py").write_text("import importlib\nimportlib.import_module('localservers.sendgrid_api')\n")
    (package / "d.py").write_text("from campaigns import models\nimport localserversx\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert localservers_imports(["app"]) == [
        "app/a.py: localservers.smtp_sink", "app/b.py: localservers.ports", "app/c.py: localservers.sendgrid_api"]
