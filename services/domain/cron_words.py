"""What is wrong with a five-field cron expression, in words: "minute 61 is out of range 0-59".

croniter only says "[61 * * * *] is not acceptable, out of range"; this reads each field the
way croniter does and names the first value it refuses. Syntax it does not judge here (L, W, #)
is left to croniter, whose refusal is then reported without its internals.
"""

from __future__ import annotations

from dataclasses import dataclass

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True, slots=True)
class CronField:
    name: str
    low: int
    high: int
    names: dict[str, int]
    example: str


FIELDS = (
    CronField("minute", 0, 59, {}, "0-59"),
    CronField("hour", 0, 23, {}, "0-23"),
    CronField("day of month", 1, 31, {}, "1-31"),
    CronField("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTHS)}, "1-12 or jan-dec"),
    CronField("weekday", 0, 7, {name: i for i, name in enumerate(WEEKDAYS)}, "0-7 or sun-sat"),
)
# Extensions croniter reads (last day, nearest weekday, nth weekday): not judged here.
_LEFT_TO_CRONITER = ("l", "w", "#")


def field_problem(text: str, field: CronField) -> str | None:
    """Why one field's text is refused, or None when every value in it is within range."""
    for item in text.split(","):
        if not item:
            return f"{field.name} '{text}' has an empty item between commas"
        base, slash, step = item.partition("/")
        if slash:
            if not step.isdigit():
                return f"{field.name} step '{step}' must be a whole number"
            if int(step) == 0:
                return f"{field.name} step must be at least 1, got '{item}'"
        if base == "*" or (base == "?" and field.name in ("day of month", "weekday")):
            continue
        if any(mark in base.lower() for mark in _LEFT_TO_CRONITER):
            continue
        first, dash, last = base.partition("-")
        if not first or (dash and not last):
            return f"{field.name} '{item}' needs a number (or *) on each side of - and before /"
        for token in (first, last) if dash else (first,):
            problem = _value_problem(token, field)
            if problem is not None:
                return problem
    return None


def _value_problem(token: str, field: CronField) -> str | None:
    if token.lower() in field.names:
        return None
    if not token.isdigit():
        return f"{field.name} '{token}' is not a number ({field.example})"
    if not field.low <= int(token) <= field.high:
        return f"{field.name} {int(token)} is out of range {field.low}-{field.high}"
    return None


def expression_problem(fields: list[str]) -> str | None:
    """The first field problem of a split five-field expression, or None."""
    for text, field in zip(fields, FIELDS, strict=True):
        problem = field_problem(text, field)
        if problem is not None:
            return problem
    return None
