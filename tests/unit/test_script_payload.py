"""The script kind's payload: its defaults, and every refusal naming the field and why."""

from __future__ import annotations

from typing import Any

import pytest

from services.domain.errors import ValidationFailed
from services.domain.kinds.script import MAX_ARG_LENGTH, MAX_ARGS
from services.domain.task_spec import canonical_payload

PREFIX = "task_payload.script_payload"
NO_NUL = "must not contain the NUL character (\\u0000)"


def script(**fields: Any) -> dict[str, Any]:
    return {"script_payload": {"file_id": "3f0c.sh", **fields}}


def refusal(**fields: Any) -> tuple[str, str]:
    with pytest.raises(ValidationFailed) as refused:
        canonical_payload("script", script(**fields))
    reason = refused.value.message.removeprefix(f"{refused.value.field}: ")
    return refused.value.field, reason


def test_defaults_are_filled() -> None:
    assert canonical_payload("script", script()) == {
        "script_payload": {
            "file_id": "3f0c.sh",
            "args": [],
            "env": {},
            "interpreter": None,
            "timeout_seconds": 300,
            "working_dir": None,
        }
    }


def test_arguments_and_environment_are_kept_as_given() -> None:
    args = ["--name", "two words", "", "ünïcode", "x" * MAX_ARG_LENGTH] + ["a"] * (MAX_ARGS - 5)
    given = script(args=args, env={"LOG_LEVEL": "debug", "_X1": ""}, interpreter="python3")
    payload = canonical_payload("script", given)["script_payload"]
    assert (payload["args"], payload["env"]) == (args, {"LOG_LEVEL": "debug", "_X1": ""})
    assert payload["interpreter"] == "python3"


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"args": ["a"] * (MAX_ARGS + 1)}, "args", "must hold at most 256 items"),
        ({"args": ["ok", "x" * (MAX_ARG_LENGTH + 1)]}, "args.1",
         "must hold at most 4096 characters"),
        ({"args": ["ok", "a\x00b"]}, "args.1", NO_NUL),
        ({"args": "--verbose"}, "args", "must be a list, not text"),
        ({"args": [1]}, "args.0", "must be text, not a number"),
        (
            {"env": {"1ST": "x"}},
            "env",
            "'1ST' is not a variable name: a letter or _, then letters, digits, _",
        ),
        (
            {"env": {"A-B": "x"}},
            "env",
            "'A-B' is not a variable name: a letter or _, then letters, digits, _",
        ),
        (
            {"env": {"NAME": "a\x00b"}},
            "env.NAME",
            "the value of NAME must be at most 32768 characters, no NUL",
        ),
        (
            {"env": {f"V{n}": "" for n in range(257)}},
            "env",
            "may hold at most 256 variables",
        ),
        ({"interpreter": "perl"}, "interpreter",
         "must be one of bash, python3, sh, zsh, got 'perl'"),
        ({"timeout_seconds": 0}, "timeout_seconds", "must be at least 1 second"),
        ({"working_dir": "/tmp\x00"}, "working_dir", NO_NUL),
        ({"file_id": "../etc/passwd"}, "file_id", "must be the file_id of an upload: letters, "
         "digits, . - _ (no slashes)"),
        ({"file_id": ""}, "file_id", "must not be empty"),
        ({"command": "ls"}, "command", "is not a known field"),
    ],
)  # fmt: skip
def test_a_bad_field_is_refused_naming_it(fields: dict[str, Any], field: str, reason: str) -> None:
    assert refusal(**fields) == (f"{PREFIX}.{field}", reason)


def test_a_script_needs_its_upload() -> None:
    with pytest.raises(ValidationFailed) as refused:
        canonical_payload("script", {"script_payload": {"args": ["x"]}})
    assert refused.value.field == f"{PREFIX}.file_id"
    with pytest.raises(ValidationFailed) as refused:
        canonical_payload("script", {})
    assert (refused.value.field, refused.value.message) == (
        PREFIX,
        f"{PREFIX}: is required for a script task",
    )
