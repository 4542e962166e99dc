"""docs/architecture.md lets a reader find any rule in one hop: every file it names exists (in the service
whose column names it), every name it gives is defined in the tree, and every name in a row of the pricing-policy
table is defined (or, for a column, an RPC or an event, written) in a file that same row lists. Read from the
source, nothing is run."""

from __future__ import annotations

import ast
import functools
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
POLICY_HEADING = "## Where each rule of the pricing policy lives"
SHAPE_COLUMNS = ("billing", "routing", "wallet")
_PATH = re.compile(r"/|\.(py|sql|md|txt)$")
_NAME = re.compile(r"[A-Za-z_][\w.]*")


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def sources() -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / "services").rglob("*") if p.suffix in (".py", ".sql"))


def definitions(path: pathlib.Path) -> set[str]:
    """Top-level functions, classes and assignments of a Python file, and Class.member; a SQL file's functions."""
    text = path.read_text()
    if path.suffix == ".sql":
        return set(re.findall(r"CREATE (?:OR REPLACE )?FUNCTION\s+([\w.]+)", text, re.IGNORECASE))
    found: set[str] = set()

    def targets(node: ast.stmt) -> list[str]:
        if isinstance(node, ast.Assign):
            return [t.id for t in node.targets if isinstance(t, ast.Name)]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            return [node.target.id]
        return []

    for node in ast.parse(text).body:
        found |= set(targets(node))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
            if isinstance(node, ast.ClassDef):
                for member in node.body:
                    names = [member.name] if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
                    found |= {f"{node.name}.{n}" for n in names + targets(member)}
    return found


@functools.cache
def all_definitions() -> dict[pathlib.Path, set[str]]:
    return {p: definitions(p) for p in sources()}


def defined_in(name: str, paths: list[pathlib.Path] | None = None) -> bool:
    """Defined in one of paths (any source when None), also named through its module (`cascade.local_skip`) or,
    for a method, bare (`set_booking_fee`)."""
    defs = all_definitions()
    for path in paths if paths is not None else list(defs):
        names = defs[path] if path in defs else definitions(path)
        module, _, rest = name.partition(".")
        if name in names or (rest and module == path.stem and rest in names):
            return True
        if any(n.endswith(f".{name}") for n in names):
            return True
    return False


@functools.cache
def routine_names() -> frozenset[str]:
    return frozenset(node.name for path in sources() if path.suffix == ".py"
                     for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def is_routine(name: str) -> bool:
    """A function, method or class somewhere in services/: such a name is found where it is defined."""
    return name in routine_names()


def written_in(name: str, paths: list[pathlib.Path]) -> bool:
    return any(re.search(rf"\b{re.escape(name)}\b", p.read_text()) for p in paths if p.is_file())


def resolve(token: str) -> pathlib.Path | None:
    token = token.rstrip("/")
    for candidate in (ROOT / token, ROOT / "services" / token):
        if candidate.exists():
            return candidate
    return None


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def sections() -> tuple[str, str]:
    text = re.sub(r"```.*?```", "", DOC.read_text(), flags=re.DOTALL)
    head, _, policy = text.partition(POLICY_HEADING)
    assert policy, f"docs/architecture.md has no {POLICY_HEADING!r} section"
    return head, policy


def is_name(token: str) -> bool:
    return bool(_NAME.fullmatch(token)) and not token.startswith("CALLERSYNC_")


def test_every_file_a_service_column_names_is_in_that_service():
    head, _ = sections()
    shape = [r for r in table_rows(head) if len(r) == 4 and r[0] != "role"]
    assert shape, "the one-shape table is missing"
    missing = [f"{service}: {token}" for row in shape for service, cell in zip(SHAPE_COLUMNS, row[1:], strict=True)
               for token in code_spans(cell) if _PATH.search(token) and not token.startswith("tests/")
               and not (ROOT / "services" / service / token).exists()]
    assert not missing, missing


def test_every_path_and_name_in_the_prose_exists():
    head, _ = sections()
    problems = []
    for token in code_spans(head):
        if _PATH.search(token):
            if resolve(token) is None and not list((ROOT / "services").glob(f"*/{token}")):
                problems.append(f"no file {token}")
        elif is_name(token) and ("." in token or "_" in token or token[0].isupper()) and not defined_in(token):
            if not any(written_in(token, [p]) for p in sources()):
                problems.append(f"{token} is named nowhere in services/")
    assert not problems, problems


def test_each_policy_row_names_file_and_function_in_one_hop():
    _, policy = sections()
    rows = [r for r in table_rows(policy) if len(r) == 3 and r[0] != "rule (product.md)" and r[1]]
    assert len(rows) > 30, "the pricing-policy table lost its rows"
    problems = []
    for rule, where, names in rows:
        files = [resolve(t) for t in code_spans(where)]
        problems += [f"{rule[:40]!r}: no file {t}" for t, f in zip(code_spans(where), files, strict=True) if f is None]
        files = [f for f in files if f is not None]
        for token in code_spans(names):
            if not is_name(token):
                continue  # a key like call:<id>
            if defined_in(token, files):
                continue
            if written_in(token, files) and not is_routine(token):  # a constant, a column, an RPC, an event
                continue
            problems.append(f"{rule[:40]!r}: {token} is not in {[str(f.relative_to(ROOT)) for f in files]}")
    assert not problems, problems


def test_the_checks_catch_a_two_hop_name_and_a_missing_file():
    router = ROOT / "services/routing/router.py"
    assert defined_in("Router.route_call", [router]) and not defined_in("Directory.is_blocked", [router])
    assert defined_in("Directory.is_blocked") and not defined_in("Directory.no_such_rule")
    assert resolve("services/routing/router.py") and resolve("routing/router.py") and not resolve("routing/gone.py")
