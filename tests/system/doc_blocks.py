"""The command blocks of README.md and docs/*.md, as one bash script per file, so a test can run them against a
live stack exactly as a reader pastes them into one terminal (variables carry from block to block).

Which blocks: fenced ```sh / ```bash blocks are commands; ```sql blocks run through psql against the stack's
database. A block right after a line `<!-- not-run: why -->` is skipped (a deployment command, a placeholder),
and the reason is required. The documented addresses (127.0.0.1:50051-50053 and :8080) are rewritten to the
test stack's ports: the docs keep the addresses a reader uses.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_LANGS = ("sh", "bash")
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<why>\S.*?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
DEFAULT_PORTS = {"wallet": 50051, "billing": 50052, "routing": 50053, "gateway": 8080}


@dataclasses.dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    not_run: str  # the reason, or "" when the block runs

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i].strip())
        if fence is None:
            i += 1
            continue
        start, lang = i, fence["lang"]
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        previous = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.search(previous)
        indent = len(lines[start]) - len(lines[start].lstrip())
        text = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in body)
        found.append(Block(path, start + 1, lang, text, marker["why"] if marker else ""))
        i += 1
    return found


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


def script(path: Path, ports: dict[str, int], psql: str, database_url: str) -> str | None:
    """The file's runnable blocks as one bash script, each announced on stderr so a failure names its block."""
    parts = ["set -euo pipefail"]
    for block in blocks(path):
        if block.not_run or block.lang not in (*COMMAND_LANGS, "sql"):
            continue
        parts.append(f"echo '>>> block {block.where}' >&2")
        text = rewrite_ports(block.text, ports)
        if block.lang == "sql":
            parts.append(f"{psql} -X -v ON_ERROR_STOP=1 -q '{database_url}' <<'CALLERSYNC_SQL'\n{text}\nCALLERSYNC_SQL")
        else:
            parts.append(text)
    return "\n".join(parts) + "\n" if len(parts) > 1 else None
