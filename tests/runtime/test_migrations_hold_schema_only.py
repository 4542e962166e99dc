"""Stored functions have one source: a numbered migration newer than the repeatable-functions convention defines
no function or procedure (those go in the service's migrations/R__functions.sql, re-applied when it changes).
The migrations written before it keep theirs: they are history, never edited."""

from __future__ import annotations

import re

import pytest

from services.ops import SERVICES
from services.runtime.db import REPEATABLE, migration_files

# The last numbered migration of each service written before the convention, which may still define functions.
BEFORE_CONVENTION = {"wallet": 6, "billing": 0, "routing": 0}
_ROUTINE = re.compile(r"\bCREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\b", re.IGNORECASE)


def without_comments(sql: str) -> str:
    return re.sub(r"/\*.*?\*/", " ", re.sub(r"--[^\n]*", " ", sql), flags=re.DOTALL)


def routines_in(sql: str) -> list[str]:
    return [m.group(0) for m in _ROUTINE.finditer(without_comments(sql))]


def test_every_service_is_listed():
    assert set(BEFORE_CONVENTION) == set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_numbered_migrations_after_the_convention_change_schema_only(service):
    newer = [p for p in migration_files(SERVICES[service].migrations) if int(p.name[:4]) > BEFORE_CONVENTION[service]]
    found = {p.name: routines_in(p.read_text()) for p in newer if routines_in(p.read_text())}
    assert not found, f"define these in {service}/migrations/{REPEATABLE} instead: {found}"


def test_the_check_sees_a_function_and_not_a_comment_about_one():
    assert routines_in("create or replace function wallet.f() returns int language sql as $$ select 1 $$;")
    assert routines_in("CREATE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$;")
    assert not routines_in("-- CREATE FUNCTION lives in R__functions.sql\n/* CREATE FUNCTION x */ ALTER TABLE t;")
