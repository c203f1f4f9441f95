"""An inbound unit's frame: where the message came from, the files it plans, and writing them.

How a unit stays idempotent, the simplest design that survives a crash anywhere:

1. The unit classifies the message and, in ONE store transaction, records its effects (lifecycle
   transitions, notification/incoming/quarantine rows), the raw message's SHA-256 for the account
   (the dedup key, with its Message-ID for reference) and every file it must write: item, planned
   path under the inbox folder and bytes (``PlannedOutput``).
2. After the commit, each planned file is written atomically (``sink.write``) and marked written in
   the store (its real path recorded, its bytes dropped) one by one.
3. Then the caller acknowledges (mark processed, UID MOVE).

A message seen again (a crash before the ack, a UIDVALIDITY change, the same mail moved back) is
found by its SHA-256: nothing is recorded again; only the files still pending are written. A crash
between linking a file into place and marking it written leaves a file the store does not know: when
completing a pending file, a file at the planned name or one of its clash names (``name (2).xml``)
with exactly the planned bytes and owned by no recorded item is that file, and is adopted instead of
written twice. Otherwise output folders are only checked for the free clash counter of a set (all
files of one item carry the same `` (n)``, see ``write_pending``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pecgateway import sink
from pecgateway.log import get_logger
from pecgateway.store import Item, PlannedOutput

if TYPE_CHECKING:
    from pecgateway.config import Account
    from pecgateway.service import Gateway

__all__ = ["Plan", "Source", "Unit", "json_bytes", "write_pending"]

_log = get_logger()


@dataclass(slots=True)
class Plan:
    """The files one unit will write, in order; paths relative to the account's inbox folder."""

    outputs: list[PlannedOutput] = field(default_factory=list)

    def add(self, item: Item, item_id: int, relpath: PurePosixPath, data: bytes) -> PurePosixPath:
        """Plan ``data`` at ``relpath`` for ``item``; returns ``relpath``."""
        self.outputs.append(PlannedOutput(item, item_id, relpath.as_posix(), data))
        return relpath

    def beside(
        self, item: Item, item_id: int, first: PurePosixPath, name: str, data: bytes
    ) -> None:
        """Plan ``data`` as ``name`` in the folder of ``first`` (a sidecar, the unwrapped XML)."""
        self.add(item, item_id, first.parent / sink.safe_name(name), data)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: ``imap:<uidvalidity>/<uid>`` in the audit trail."""

    folder: str
    uidvalidity: int
    uid: int

    def __str__(self) -> str:
        return f"imap:{self.uidvalidity}/{self.uid}"

    @property
    def eml_name(self) -> str:
        return f"imap-{self.uidvalidity}-{self.uid}.eml"


@dataclass(slots=True)
class Unit:
    """One message being handled: its collaborators and the files it plans to write."""

    gw: Gateway
    account: Account
    source: Source
    plan: Plan = field(default_factory=Plan)

    def route(self, kind: sink.Kind, name: str) -> PurePosixPath:
        return sink.route(kind, name, self.gw.clock(), self.gw.config.inbox_language)

    def shown(self, relpath: PurePosixPath) -> str:
        """The planned path, for the log line (a clash may add `` (2)`` when written)."""
        return str(self.account.inbox.joinpath(*relpath.parts))


def json_bytes(facts: Mapping[str, object]) -> bytes:
    """``facts`` as the inbox's JSON sidecars are written: indented UTF-8, a final newline."""
    text = json.dumps(facts, indent=2, ensure_ascii=False, default=str) + "\n"
    return text.encode("utf-8")


def write_pending(gw: Gateway, account: Account, inbound_id: int, *, recovering: bool) -> int:
    """Writes the unit's files not written yet and records each; returns how many were missing.

    The files of one item (an invoice with its XML, MT, HTML and JSON; a quarantined message with
    its reason and JSON) form a set written with ONE clash counter, the smallest free for all of
    them, so ``a (2).xml.p7m`` has ``a (2).xml`` and ``a (2).xml.p7m.json`` beside it.
    ``recovering``: the unit was recorded by an earlier pass, so a file may be in place already.
    """
    sets: dict[tuple[Item, int], list[tuple[int, PlannedOutput, str | None]]] = {}
    for entry in gw.store.unit_outputs(inbound_id):
        sets.setdefault((entry[1].item, entry[1].item_id), []).append(entry)
    missing = 0
    for members in sets.values():
        missing += _write_set(gw, account.inbox, members, recovering=recovering)
    return missing


def _write_set(
    gw: Gateway,
    root: Path,
    members: list[tuple[int, PlannedOutput, str | None]],
    *,
    recovering: bool,
) -> int:
    anchor = PurePosixPath(members[0][1].relpath).name
    pending = [(output_id, output) for output_id, output, path in members if path is None]
    if not pending:
        return 0
    number = _recorded_number(members, anchor)
    if number is None and recovering:
        number = _number_left_by_a_crash(gw, root, pending, anchor)
    if number is None:
        folder = root.joinpath(*PurePosixPath(pending[0][1].relpath).parent.parts)
        number = sink.free_number(folder, [_name(o) for _, o in pending], anchor)
    for output_id, output in pending:
        relpath = _numbered(output, number, anchor)
        path = _adoptable(gw, root, relpath, output.data) if recovering else None
        if path is None:
            path = sink.write(root, relpath, output.data)
            if path.name != relpath.name:  # someone else took the name just now: a clash name
                _log.warning("inbox_name_taken", planned=relpath.name, path=str(path))
        gw.store.complete_output(output_id, str(path), at=gw.clock())
    return len(pending)


def _name(output: PlannedOutput) -> str:
    return PurePosixPath(output.relpath).name


def _numbered(output: PlannedOutput, number: int, anchor: str) -> PurePosixPath:
    relpath = PurePosixPath(output.relpath)
    return relpath.with_name(sink.numbered(relpath.name, number, anchor))


def _recorded_number(
    members: list[tuple[int, PlannedOutput, str | None]], anchor: str
) -> int | None:
    """The counter the set's files already written got (an earlier pass wrote some)."""
    for _, output, path in members:
        if path is not None:
            number = sink.number_of(_name(output), Path(path).name, anchor)
            if number is not None:
                return number
    return None


def _number_left_by_a_crash(
    gw: Gateway, root: Path, pending: list[tuple[int, PlannedOutput]], anchor: str
) -> int | None:
    """The counter of a file a crashed pass linked into place for this set but did not record."""
    for _, output in pending:
        target = root.joinpath(*PurePosixPath(output.relpath).parts)
        if not target.parent.is_dir():
            return None
        for path in sorted(target.parent.iterdir()):
            number = sink.number_of(target.name, path.name, anchor)
            if number is not None and _adoptable(
                gw, root, _numbered(output, number, anchor), output.data
            ):
                return number
    return None


def _adoptable(gw: Gateway, root: Path, relpath: PurePosixPath, data: bytes) -> Path | None:
    """The file at ``relpath`` when it holds exactly ``data`` and no recorded item owns it: a
    crashed pass linked it into place but could not record it."""
    path = root.joinpath(*relpath.parts)
    if _same_bytes(path, data) and not gw.store.is_written_path(str(path)):
        return path
    return None


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False
