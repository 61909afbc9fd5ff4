"""The audit chain, pure: canonical bytes, links, and what a check says about each tampering."""

from __future__ import annotations

import hashlib
import uuid

import msgspec
import pytest

from services.domain import audit_chain
from services.domain.audit_chain import GENESIS, SealedEvent, canonical, seal_all
from services.domain.audit_export import End, FileCheck, Header, encode_line, sealed_line


def event(position: int, data: str = '{"task_id": "t"}') -> SealedEvent:
    return SealedEvent(
        id=str(uuid.UUID(int=position)),
        stream_id="s",
        version=position,
        position=position,
        type="TaskPaused",
        data=msgspec.Raw(data.encode()),
        metadata=msgspec.Raw(b'{"user": "ann"}'),
        recorded_at="2026-11-29T10:00:00.000001Z",
    )


def test_canonical_bytes_are_the_fields_in_order_with_data_and_metadata_verbatim() -> None:
    assert canonical(event(7, '{"a": 1.50}')) == (
        b'["00000000-0000-0000-0000-000000000007","s",7,7,"TaskPaused",{"a": 1.50},'
        b'{"user": "ann"},"2026-11-29T10:00:00.000001Z"]'
    )


def test_each_link_hashes_the_previous_hash_and_the_event() -> None:
    seals = seal_all(GENESIS, 1, [event(1), event(2)])
    first = hashlib.sha256(GENESIS + canonical(event(1))).digest()
    assert seals[0].hash == first
    assert seals[1].hash == hashlib.sha256(first + canonical(event(2))).digest()
    assert [s.seq for s in seals] == [1, 2]


def test_a_changed_byte_of_data_is_an_alteration_at_its_position() -> None:
    seal = seal_all(GENESIS, 1, [event(5)])[0]
    assert audit_chain.altered(GENESIS, seal, event(5)) is None
    problem = audit_chain.altered(GENESIS, seal, event(5, '{"task_id": "u"}'))
    assert problem is not None and (problem.kind, problem.position) == ("altered", 5)


@pytest.mark.parametrize(
    ("present", "sealed", "found_at", "kind", "position"),
    [
        (False, True, 6, "removed", 5),  # the next sealed event took its place
        (False, False, 5, "altered", 5),  # its row now holds another event
        (True, True, 6, "reordered", 5),
        (True, False, 9, "inserted", 9),
    ],
)
def test_a_misplaced_event_is_named_by_what_happened_to_it(
    present: bool, sealed: bool, found_at: int, kind: str, position: int
) -> None:
    seal = seal_all(GENESIS, 1, [event(5)])[0]
    problem = audit_chain.misplaced(
        seal, event(found_at), still_present=present, found_sealed=sealed
    )
    assert (problem.kind, problem.position) == (kind, position)
    assert f"position {position}" in problem.message


def export_lines(count: int = 4) -> list[bytes]:
    events = [event(position) for position in range(1, count + 1)]
    seals = seal_all(GENESIS, 1, events)
    lines = [encode_line(Header(after_seq=0, previous=GENESIS.hex()))]
    lines += [encode_line(sealed_line(s, e)) for s, e in zip(seals, events, strict=True)]
    last = seals[-1]
    lines.append(encode_line(End(events=count, seq=count, position=count, hash=last.hash.hex())))
    return lines


def check_file(lines: list[bytes]) -> str | None:
    check = FileCheck()
    for number, line in enumerate(lines, start=1):
        problem = check.feed(number, line)
        if problem is not None:
            return problem.message
    problem = check.finish()
    return problem.message if problem else None


def test_an_untouched_export_checks() -> None:
    assert check_file(export_lines()) is None


def test_an_export_names_the_altered_removed_reordered_or_cut_place() -> None:
    lines = export_lines()
    edited = lines[2].replace(b'"task_id": "t"', b'"task_id": "x"')
    assert "position 2: the event" in str(check_file([*lines[:2], edited, *lines[3:]]))
    removed = check_file([*lines[:2], *lines[3:]])
    assert "position 3: seal 3 follows seal 1: events of the log were removed" in str(removed)
    swapped = check_file([lines[0], lines[1], lines[3], lines[2], *lines[4:]])
    assert "position 3: seal 3 follows seal 1" in str(swapped)
    assert "cut short" in str(check_file(lines[:-1]))
    assert "removed or added at its end" in str(check_file([*lines[:-2], lines[-1]]))
