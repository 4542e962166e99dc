"""Storage hands typed records to domain code: no function of a service returns asyncpg's raw rows, and no module
outside a service's storage modules sends SQL, the command line included (read from the source, nothing is run)."""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ("wallet", "billing", "routing")
# Each service's storage modules, and the reconcile audit of card payments (wallet/payment_audit.py), which
# asks the provider about what it reads.
SQL_ALLOWED = {"storage.py", "calls_storage.py", "payment_storage.py", "payment_audit.py"}
_SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT INTO|UPDATE \w+\.\w+ SET|DELETE FROM)\b")


def returns_raw_rows(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            if re.search(r"\bRecord\b", ast.unparse(node.returns)):
                found.append(f"{path.name}:{node.lineno} {node.name}")
    return found


def test_no_service_function_returns_raw_rows():
    found = [hit for s in SERVICES for p in sorted((ROOT / "services" / s).glob("*.py")) for hit in returns_raw_rows(p)]
    assert not found, found


def sql_in(path: pathlib.Path) -> list[str]:
    return [f"{path.name}:{node.lineno}" for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.search(node.value)]


def test_sql_is_sent_only_from_storage_modules():
    code = [p for s in SERVICES for p in sorted((ROOT / "services" / s).glob("*.py")) if p.name not in SQL_ALLOWED]
    found = [hit for p in [*code, ROOT / "services/ops.py", ROOT / "services/cli.py"] for hit in sql_in(p)]
    assert not found, found


def test_the_scans_see_what_they_look_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('async def f(pool) -> "asyncpg.Record":\n'
                      '    return await pool.fetchval("SELECT count(*) FROM wallet.wallets WHERE paused")\n')
    assert returns_raw_rows(sample) and sql_in(sample)
