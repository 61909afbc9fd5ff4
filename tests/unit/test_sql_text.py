"""Splitting schema.sql into statements: semicolons inside quotes, comments and bodies stay."""

from __future__ import annotations

from pathlib import Path

from services.infra.sql_text import statements

SCHEMA = Path(__file__).parents[2] / "schema.sql"


def test_semicolons_in_strings_comments_and_bodies_do_not_split() -> None:
    script = """
    -- a comment; still a comment
    SELECT ';', "odd;name" FROM t;
    /* a block; comment */
    CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;
    DO $body$ BEGIN PERFORM 1; END $body$;
    """
    assert [s.splitlines()[-1].strip() for s in statements(script)] == [
        """SELECT ';', "odd;name" FROM t""",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$",
        "DO $body$ BEGIN PERFORM 1; END $body$",
    ]


def test_the_schema_splits_into_whole_statements() -> None:
    found = statements(SCHEMA.read_text())
    assert all(not s.rstrip().endswith(";") for s in found)
    bodies = [s for s in found if "$$" in s]
    assert bodies and all(s.count("$$") == 2 for s in bodies)
    assert sum("CREATE TABLE IF NOT EXISTS events (" in s for s in found) == 1
