"""The command blocks of README.md and docs/*.md, as one bash script per file, so a test can run them against a
live stack exactly as a reader pastes them into one terminal (variables carry from block to block), and check
that they print what the page says they print.

Which blocks: fenced ```sh / ```bash blocks are commands; ```sql blocks run through psql against the stack's
database. A block right after a line `<!-- not-run: why -->` is skipped (a deployment command, a placeholder,
a benchmark), and the reason is required. Indented code blocks (four spaces, after a blank line) are seen too:
they never run, so one that holds commands must say why not. The documented addresses (127.0.0.1:50051-50053
and :8080) are rewritten to the test stack's ports: the docs keep the addresses a reader uses.

What a block prints: HTML comments right after its closing fence (blank lines between are fine), invisible
to a reader, each one thing its standard output must show:

    <!-- expect: TEXT -->       the output contains TEXT, as written
    <!-- expect-jq: FILTER -->  `jq -e FILTER` is true on the JSON documents the block printed, as one array
                                in order (text between them is left out): `.[0].entry.amountCents == "10000"`

And a ```json block right after a command block (nothing but blank lines and expect comments between) is
its sample reply: it must match the last JSON document the block printed, field for field (a sample may
neither leave a field out nor show one that is not there) and value for value, except what differs from run
to run: a string ending in `...` matches any string it begins, and UUIDs, RFC 3339 timestamps and numeric
ids (a field named ...Id holding digits) match any value of the same kind.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMMAND_LANGS = ("sh", "bash")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<why>\S.*?)\s*-->")
EXPECT = re.compile(r"^\s*<!--\s*expect(?P<jq>-jq)?:\s*(?P<what>\S.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
INDENT = "    "
DEFAULT_PORTS = {"wallet": 50051, "billing": 50052, "routing": 50053, "gateway": 8080}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@dataclasses.dataclass
class Expect:
    kind: str  # "text", "jq" or "reply" (a sample reply: the ```json block's text)
    what: str
    line: int  # 1-based line of the comment, or of the sample's opening fence


@dataclasses.dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence (of the first line, for an indented block)
    lang: str  # "" for an unlabelled or indented block
    text: str
    not_run: str  # the reason, or "" when the block runs
    end: int = 0  # 0-based index of the closing fence (of the last line, for an indented block)
    indented: bool = False
    expects: list[Expect] = dataclasses.field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        return not self.not_run and self.lang in (*COMMAND_LANGS, "sql")


def _reason_before(lines: list[str], start: int) -> str:
    previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
    marker = NOT_RUN.search(previous)
    return marker["why"] if marker else ""


def _indented_block_at(lines: list[str], i: int) -> int:
    """The index past an indented code block starting at i, or i when none starts there: four spaces after a
    blank line, outside a list (a list item's continuation is indented too)."""
    if not lines[i].startswith(INDENT) or not lines[i].strip() or (i > 0 and lines[i - 1].strip()):
        return i
    above = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
    if re.match(r"^\s*([-*+]|\d+\.)\s", above) or (above.startswith("  ") and not above.startswith(INDENT)):
        return i
    j = i
    while j < len(lines) and (lines[j].startswith(INDENT) or not lines[j].strip()):
        j += 1
    while j > i and not lines[j - 1].strip():
        j -= 1
    return j


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i].strip())
        if fence is None:
            past = _indented_block_at(lines, i)
            if past > i:
                text = "\n".join(line[len(INDENT):] for line in lines[i:past])
                found.append(Block(path, i + 1, "", text, _reason_before(lines, i), end=past - 1, indented=True))
                i = past
            else:
                i += 1
            continue
        start, lang = i, fence["lang"]
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        indent = len(lines[start]) - len(lines[start].lstrip())
        text = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in body)
        block = Block(path, start + 1, lang, text, _reason_before(lines, start), end=i)
        _attach_expectations(lines, block, found[-1] if found else None)
        found.append(block)
        i += 1
    return found


def _attach_expectations(lines: list[str], block: Block, previous: Block | None) -> None:
    """The expect comments after `block`; and `block` as the sample reply of the command block before it."""
    j = block.end + 1
    while j < len(lines) and (not lines[j].strip() or EXPECT.match(lines[j])):
        marker = EXPECT.match(lines[j])
        if marker:
            block.expects.append(Expect("jq" if marker["jq"] else "text", marker["what"], j + 1))
        j += 1
    if block.lang != "json" or previous is None or not previous.runs:
        return
    between = lines[previous.end + 1:block.line - 1]
    if all(not line.strip() or EXPECT.match(line) for line in between):
        previous.expects.append(Expect("reply", block.text, block.line))


def doc_files() -> list[Path]:
    """In the order a reader meets them: the README, the walkthrough (it creates what later pages look at),
    then the rest."""
    first = [ROOT / "README.md", ROOT / "docs" / "walkthrough.md"]
    rest = sorted(p for p in (ROOT / "docs").glob("*.md") if p not in first)
    return [p for p in first if p.exists()] + rest


def rewrite_ports(text: str, ports: dict[str, int]) -> str:
    for name, default in DEFAULT_PORTS.items():
        for host in ("127.0.0.1", "localhost"):
            text = text.replace(f"{host}:{default}", f"127.0.0.1:{ports[name]}")
    return text


def output_file(out_dir: Path, block: Block) -> Path:
    return out_dir / f"{block.path.stem}-{block.line}.out"


def script(path: Path, ports: dict[str, int], psql: str, database_url: str, out_dir: Path) -> str | None:
    """The file's runnable blocks as one bash script, each announced on stderr so a failure names its block,
    and each one's standard output kept in `out_dir` (output_file) for the expectations, and shown."""
    parts = ["set -euo pipefail"]
    for block in blocks(path):
        if not block.runs:
            continue
        parts.append(f"echo '>>> block {block.where}' >&2")
        text = rewrite_ports(block.text, ports)
        if block.lang == "sql":
            text = f"{psql} -X -v ON_ERROR_STOP=1 -q '{database_url}' <<'CALLERSYNC_SQL'\n{text}\nCALLERSYNC_SQL"
        out = shlex.quote(str(output_file(out_dir, block)))
        # A group, not a subshell: variables the block sets carry on to the next one.
        parts.append(f"{{\n{text}\n}} > {out}\ncat {out}")
    return "\n".join(parts) + "\n" if len(parts) > 1 else None


def json_documents(output: str) -> list[Any]:
    """Every JSON object or array printed at the start of a line, in order; any other text is skipped."""
    documents: list[Any] = []
    decoder = json.JSONDecoder()
    at = 0
    while at < len(output):
        if output[at] in "{[" and (at == 0 or output[at - 1] == "\n"):
            try:
                document, end = decoder.raw_decode(output, at)
            except json.JSONDecodeError:
                pass
            else:
                documents.append(document)
                at = end
                continue
        at += 1
    return documents


def _varies_alike(key: str, sample: str, actual: str) -> bool:
    if sample.endswith("...") and actual.startswith(sample[:-3]):
        return True
    for shape in (UUID, TIMESTAMP):
        if shape.match(sample) and shape.match(actual):
            return True
    return key.endswith("Id") and sample.isdigit() and actual.isdigit()


def reply_mismatches(sample: Any, actual: Any, where: str = "", key: str = "") -> list[str]:
    """How a sample reply differs from the real one (empty when it matches); `where` is the JSON path."""
    if isinstance(sample, dict) and isinstance(actual, dict):
        found = [f"{where}.{k}: in the sample, not in the reply" for k in sample if k not in actual]
        found += [f"{where}.{k}: in the reply ({json.dumps(actual[k])[:60]}), not in the sample"
                  for k in actual if k not in sample]
        for k in sample.keys() & actual.keys():
            found += reply_mismatches(sample[k], actual[k], f"{where}.{k}", k)
        return found
    if isinstance(sample, list) and isinstance(actual, list):
        if len(sample) != len(actual):
            return [f"{where}: {len(sample)} items in the sample, {len(actual)} in the reply"]
        pairs = enumerate(zip(sample, actual, strict=True))
        return [m for n, (s, a) in pairs for m in reply_mismatches(s, a, f"{where}[{n}]", key)]
    if isinstance(sample, str) and isinstance(actual, str) and _varies_alike(key, sample, actual):
        return []
    return [] if sample == actual else [f"{where}: {json.dumps(sample)[:60]} in the sample, {json.dumps(actual)[:60]}"
                                        " in the reply"]
