"""google.api.http path templates (`/v1/wallets/{contractor_id}:topUp`): parsed once, matched per request.

Grammar, from google/api/http.proto:
    Template = "/" Segments [ Verb ] ;   Segments = Segment { "/" Segment } ;
    Segment  = "*" | "**" | LITERAL | Variable ;   Variable = "{" FieldPath [ "=" Segments ] "}" ;
    Verb     = ":" LITERAL ;
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse


class TemplateError(ValueError):
    """A proto annotation the gateway cannot serve: fails the gateway at start, not per request."""


@dataclasses.dataclass(frozen=True)
class Variable:
    field_path: str  # dotted proto field names, e.g. "contractor_id" or "leg.contractor_id"
    group: str  # the regex group that captures it
    multi_segment: bool  # its pattern spans slashes ("**" or several segments)
    pattern: str  # as written, e.g. "*" or "charges/*"


@dataclasses.dataclass(frozen=True)
class PathTemplate:
    source: str
    regex: re.Pattern[str]
    variables: tuple[Variable, ...]
    literal_segments: int
    verb: str

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Field path -> decoded value when `raw_path` (still percent-encoded) fits, else None."""
        found = self.regex.fullmatch(raw_path)
        if found is None:
            return None
        values = {}
        for var in self.variables:
            raw = found.group(var.group)
            # As grpc-gateway: a multi-segment value keeps an encoded slash encoded, so segments stay apart.
            values[var.field_path] = (
                urllib.parse.unquote(re.sub("%2[fF]", "%252F", raw))
                if var.multi_segment
                else urllib.parse.unquote(raw)
            )
        return values

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key, most specific first: a custom verb, then more literal segments, then fewer variables."""
        return (1 if self.verb else 0, self.literal_segments, -len(self.variables))

    def openapi_path(self) -> str:
        """The OpenAPI form: every variable as `{field_path}`, the verb kept literally."""
        text = self.source
        for var in self.variables:
            text = re.sub(
                r"\{" + re.escape(var.field_path) + r"(=[^}]*)?\}", "{" + var.field_path + "}", text
            )
        return text


_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_LITERAL = re.compile(r"[A-Za-z0-9._~!$&'()+,;=@-]+|%[0-9A-Fa-f]{2}")


def _split_top_level(text: str, sep: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _segment_regex(segment: str, source: str) -> tuple[str, bool]:
    """Regex for one segment without variables, and whether it is a literal."""
    if segment == "*":
        return "[^/]+", False
    if segment == "**":
        return ".+", False
    if not segment or not all(_LITERAL.fullmatch(part) for part in re.findall(r"%..|[^%]+", segment)):
        raise TemplateError(f"{source!r}: bad segment {segment!r}")
    return re.escape(segment), True


def parse(source: str) -> PathTemplate:
    if not source.startswith("/"):
        raise TemplateError(f"{source!r}: a path template starts with '/'")
    body, verb = source[1:], ""
    last = _split_top_level(body, "/")[-1]
    verb_parts = _split_top_level(last, ":")
    if len(verb_parts) > 2:
        raise TemplateError(f"{source!r}: more than one ':' in the last segment")
    if len(verb_parts) == 2:
        verb = verb_parts[1]
        if not verb or not _LITERAL.fullmatch(verb):
            raise TemplateError(f"{source!r}: bad verb {verb!r}")
        body = body[: len(body) - len(verb) - 1]
    pieces: list[str] = []
    variables: list[Variable] = []
    literals = 0
    for segment in _split_top_level(body, "/"):
        if segment.startswith("{"):
            if not segment.endswith("}") or segment.count("{") != 1:
                raise TemplateError(f"{source!r}: bad variable {segment!r}")
            field_path, _, pattern = segment[1:-1].partition("=")
            if not _FIELD_PATH.fullmatch(field_path):
                raise TemplateError(f"{source!r}: bad field path {field_path!r}")
            if any(v.field_path == field_path for v in variables):
                raise TemplateError(f"{source!r}: {field_path} bound twice")
            pattern = pattern or "*"
            sub = [_segment_regex(s, source) for s in pattern.split("/")]
            literals += sum(1 for _, is_literal in sub if is_literal)
            group = f"v{len(variables)}"
            pieces.append(f"(?P<{group}>" + "/".join(r for r, _ in sub) + ")")
            multi = "**" in pattern.split("/") or len(sub) > 1
            variables.append(Variable(field_path, group, multi, pattern))
        else:
            regex, is_literal = _segment_regex(segment, source)
            literals += int(is_literal)
            pieces.append(regex)
    regex_text = "/" + "/".join(pieces) + (":" + re.escape(verb) if verb else "")
    return PathTemplate(source, re.compile(regex_text), tuple(variables), literals, verb)
