"""Imports point down, read from the source (no module is run): the runtime imports no service and nothing above
it, no service imports another (they talk through the contracts), and nothing imports the command line, which
only its entry point (`callersync`, `python -m services.cli`) runs."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ("wallet", "billing", "routing", "gateway")
ABOVE_RUNTIME = (*SERVICES, "demo", "cli", "ops")


def imports_of(path: pathlib.Path) -> set[str]:
    """Every module an import statement in the file names (`from a import b` names a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def package_of(module: str) -> str:
    """services.wallet.app -> wallet; services.cli -> cli; anything outside services -> ''."""
    parts = module.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else ""


def sources(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_runtime_imports_no_service_and_nothing_above_it():
    found = [f"{p.relative_to(ROOT)} imports {m}" for p in sources("services/runtime") for m in imports_of(p)
             if package_of(m) in ABOVE_RUNTIME]
    assert not found, found


def test_no_service_imports_another_service():
    found = []
    for service in SERVICES:
        for path in sources(f"services/{service}"):
            found += [f"{path.relative_to(ROOT)} imports {m}" for m in imports_of(path)
                      if package_of(m) in ABOVE_RUNTIME and package_of(m) != service]
    assert not found, found


def test_nothing_imports_the_command_line():
    code = [*sources("services"), *sources("bench"), *sources("scripts")]
    found = [f"{p.relative_to(ROOT)} imports {m}" for p in code for m in imports_of(p) if package_of(m) == "cli"]
    assert not found, found


def test_the_scan_sees_an_upward_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from services.gateway.web.dev import MailSink\n    import services.cli\n")
    assert {package_of(m) for m in imports_of(sample)} >= {"gateway", "cli"}
