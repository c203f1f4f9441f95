"""The store's records of what the mailbox brought: processed messages, inbound units (a raw
message once, with the files it must produce), suppliers' invoices, notifications and receipts,
quarantine entries, and the paths written for each item.

Part of ``Store`` (store.py mixes these methods in); times are passed in, statements parameterised.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from pecgateway.store_db import Database, When, iso, message_key, row_id

__all__ = [
    "InboundMessage",
    "InboundRecords",
    "Incoming",
    "Item",
    "PlannedOutput",
    "same_content_warning",
]


class Item(enum.Enum):
    """What a written path belongs to."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"
    NOTIFICATION = "notification"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A supplier's invoice received."""

    id: int
    account: str
    file_name: str
    identificativo_sdi: str | None
    sha256: str
    received: str
    source: str
    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A raw mailbox message whose effects are recorded (seen once per account, by SHA-256)."""

    id: int
    account: str
    sha256: str
    message_id: str | None
    outcome: str  # what the unit concluded: receipt, notification, invoice, orphan, quarantined
    source: str  # where it was first seen, e.g. imap:1700000000/42
    at: str


@dataclass(frozen=True, slots=True)
class PlannedOutput:
    """A file an inbound unit must write: under the inbox folder at ``relpath`` (or, on a clash,
    the name ``sink.write`` picks), recorded as a path of ``item``/``item_id`` once written."""

    item: Item
    item_id: int
    relpath: str  # POSIX, relative to the account's inbox folder
    data: bytes


def same_content_warning(received: str, file_name: str) -> str:
    """The warning on an invoice whose content equals one received before (``received`` ISO)."""
    return (
        f"its content equals the invoice received on {received[:10]} as {file_name}: SDI "
        "delivered the same invoice again; check with the supplier before booking it twice"
    )


class InboundRecords(Database):
    """Mailbox bookkeeping and the inbound items (the methods ``Store`` offers for them)."""

    # ---- mailbox bookkeeping ----------------------------------------------------------------
    def is_processed(self, account: str, folder: str, uidvalidity: int, uid: int) -> bool:
        """Whether this mailbox message was already handled."""
        row = self._db.execute(
            "SELECT 1 FROM processed WHERE account = ? AND folder = ? AND uidvalidity = ?"
            " AND uid = ?",
            (account, folder, uidvalidity, uid),
        ).fetchone()
        return row is not None

    def mark_processed(
        self,
        account: str,
        folder: str,
        uidvalidity: int,
        uid: int,
        *,
        at: When,
        message_id: str | None = None,
        outcome: str = "",
    ) -> None:
        """Remember a handled message (idempotent: a second call keeps the first record)."""
        key = message_key(message_id) if message_id else None
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO processed (account, folder, uidvalidity, uid, message_id,"
                " outcome, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (account, folder, uidvalidity, uid, key, outcome, iso(at)),
            )

    def is_processed_message_id(self, account: str, message_id: str) -> bool:
        """Whether a message with this (normalised) Message-ID was handled, in any folder."""
        row = self._db.execute(
            "SELECT 1 FROM processed WHERE account = ? AND message_id = ?",
            (account, message_key(message_id)),
        ).fetchone()
        return row is not None

    # ---- inbound units: each raw message once, its files until written ---------------------
    def find_inbound_message(self, account: str, sha256: str) -> InboundMessage | None:
        """The recorded unit of a raw message with these bytes, if any."""
        row = self._db.execute(
            "SELECT id, account, sha256, message_id, outcome, source, at FROM inbound_message"
            " WHERE account = ? AND sha256 = ?",
            (account, sha256.lower()),
        ).fetchone()
        return None if row is None else InboundMessage(**dict(row))

    def record_inbound_message(
        self,
        account: str,
        *,
        sha256: str,
        message_id: str | None,
        outcome: str,
        source: str,
        at: When,
        outputs: Sequence[PlannedOutput] = (),
    ) -> int:
        """A raw message handled, with the files still to write, in one transaction.

        Call it inside the ``atomic()`` block that records the message's effects, so that the
        effects, the dedup key and the planned files commit together. Raises ``sqlite3.IntegrityError``
        when the same bytes were already recorded for ``account``.
        """
        key = message_key(message_id) if message_id else None
        with self._transaction() as db:
            inbound_id = row_id(
                db.execute(
                    "INSERT INTO inbound_message (account, sha256, message_id, outcome, source,"
                    " at) VALUES (?, ?, ?, ?, ?, ?)",
                    (account, sha256.lower(), key, outcome, source, iso(at)),
                )
            )
            db.executemany(
                "INSERT INTO inbound_output (inbound_id, item, item_id, relpath, data)"
                " VALUES (?, ?, ?, ?, ?)",
                [(inbound_id, o.item.value, o.item_id, o.relpath, o.data) for o in outputs],
            )
        return inbound_id

    def pending_outputs(self, inbound_id: int) -> list[tuple[int, PlannedOutput]]:
        """``(output id, output)`` of every file of the unit not written yet, in planned order."""
        rows = self._db.execute(
            "SELECT id, item, item_id, relpath, data FROM inbound_output"
            " WHERE inbound_id = ? AND path IS NULL ORDER BY id",
            (inbound_id,),
        )
        return [
            (
                row["id"],
                PlannedOutput(Item(row["item"]), row["item_id"], row["relpath"], row["data"]),
            )
            for row in rows
        ]

    def unit_outputs(self, inbound_id: int) -> list[tuple[int, PlannedOutput, str | None]]:
        """``(output id, output, path written or None)`` of every file of the unit, in planned
        order; a written output's ``data`` is empty (dropped once written)."""
        rows = self._db.execute(
            "SELECT id, item, item_id, relpath, data, path FROM inbound_output"
            " WHERE inbound_id = ? ORDER BY id",
            (inbound_id,),
        )
        return [
            (
                row["id"],
                PlannedOutput(
                    Item(row["item"]), row["item_id"], row["relpath"], row["data"] or b""
                ),
                row["path"],
            )
            for row in rows
        ]

    def complete_output(self, output_id: int, path: str, *, at: When) -> None:
        """The planned file is written at ``path``: record the path, forget the bytes."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT item, item_id FROM inbound_output WHERE id = ? AND path IS NULL",
                (output_id,),
            ).fetchone()
            if row is None:
                return
            db.execute(
                "UPDATE inbound_output SET path = ?, data = NULL WHERE id = ?", (path, output_id)
            )
            db.execute(
                "INSERT INTO written_path (item, item_id, path, at) VALUES (?, ?, ?, ?)",
                (row["item"], row["item_id"], path, iso(at)),
            )

    def is_written_path(self, path: str) -> bool:
        """Whether some item already owns the file at ``path`` (as recorded when written)."""
        row = self._db.execute("SELECT 1 FROM written_path WHERE path = ?", (path,)).fetchone()
        return row is not None

    # ---- incoming, notifications, quarantine, paths -----------------------------------------
    def record_incoming(
        self,
        account: str,
        *,
        file_name: str,
        sha256: str,
        identificativo_sdi: str | None,
        received: When,
        source: str,
    ) -> int:
        """A supplier's invoice; returns its id (for ``record_path``)."""
        return self._insert(
            "INSERT INTO incoming (account, file_name, sha256, identificativo_sdi, received,"
            " source) VALUES (?, ?, ?, ?, ?, ?)",
            (account, file_name, sha256.lower(), identificativo_sdi, iso(received), source),
        )

    def find_incoming(self, account: str, *, sha256: str) -> Incoming | None:
        """A received invoice with exactly these bytes (a repeated delivery), the first."""
        row = self._db.execute(
            "SELECT id, account, file_name, identificativo_sdi, sha256, received, source"
            " FROM incoming WHERE account = ? AND sha256 = ? ORDER BY id LIMIT 1",
            (account, sha256.lower()),
        ).fetchone()
        if row is None:
            return None
        return Incoming(**dict(row), paths=self.paths(Item.INCOMING, row["id"]))

    def incoming_by_sha256(self, account: str, sha256: str) -> list[Incoming]:
        """Every received invoice with this content (SHA-256 of the unwrapped XML), oldest first."""
        rows = self._db.execute(
            "SELECT id, account, file_name, identificativo_sdi, sha256, received, source"
            " FROM incoming WHERE account = ? AND sha256 = ? ORDER BY id",
            (account, sha256.lower()),
        ).fetchall()
        return [Incoming(**dict(row), paths=self.paths(Item.INCOMING, row["id"])) for row in rows]

    def record_notification(
        self,
        account: str,
        *,
        kind: str,
        file_name: str | None,
        received: When,
        source: str,
        outgoing_id: int | None,
        identificativo_sdi: str | None = None,
        message_id: str | None = None,
        detail: str = "",
    ) -> int:
        """An SDI notification or a PEC receipt (``kind``: "RC" ... or "accettazione" ...).

        ``outgoing_id=None`` records an orphan (about a file we never sent).
        """
        return self._insert(
            "INSERT INTO notification (account, kind, file_name, identificativo_sdi, message_id,"
            " outgoing_id, received, source, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                account,
                kind,
                file_name,
                identificativo_sdi,
                message_key(message_id) if message_id else None,
                outgoing_id,
                iso(received),
                source,
                detail,
            ),
        )

    def orphans(self, account: str) -> list[dict[str, object]]:
        """Notifications and receipts about files we never sent, oldest first."""
        rows = self._db.execute(
            "SELECT id, kind, file_name, identificativo_sdi, message_id, received, source, detail"
            " FROM notification WHERE account = ? AND outgoing_id IS NULL ORDER BY id",
            (account,),
        )
        return [
            {**dict(row), "paths": list(self.paths(Item.NOTIFICATION, row["id"]))} for row in rows
        ]

    def record_quarantine(
        self, account: str, *, what: str, reason: str, path: str, at: When
    ) -> int:
        """Something we could not understand, kept at ``path`` (under the inbox folder)."""
        return self._insert(
            "INSERT INTO quarantine (account, what, reason, path, at) VALUES (?, ?, ?, ?, ?)",
            (account, what, reason, path, iso(at)),
        )

    def record_path(self, item: Item, item_id: int, path: str, *, at: When) -> None:
        """A file written for an item (path as written; status lists them)."""
        self._insert(
            "INSERT INTO written_path (item, item_id, path, at) VALUES (?, ?, ?, ?)",
            (item.value, item_id, path, iso(at)),
        )

    def paths(self, item: Item, item_id: int) -> tuple[str, ...]:
        """The paths written for an item, in the order written."""
        rows = self._db.execute(
            "SELECT path FROM written_path WHERE item = ? AND item_id = ? ORDER BY id",
            (item.value, item_id),
        )
        return tuple(row[0] for row in rows)

    # ---- status ------------------------------------------------------------------------------
    def incoming_status(self, account: str) -> list[dict[str, object]]:
        """The ``incoming`` list of ``status --json``, oldest first; ``warnings``, present only then,
        says the content equals an invoice received before (a new SDI delivery of it)."""
        rows = self._db.execute(
            "SELECT i.id, i.file_name, i.identificativo_sdi, i.received, i.sha256,"
            " f.file_name AS first_file, f.received AS first_received"
            " FROM incoming i LEFT JOIN incoming f ON f.id = (SELECT min(e.id) FROM incoming e"
            "  WHERE e.account = i.account AND e.sha256 = i.sha256 AND e.id < i.id)"
            " WHERE i.account = ? ORDER BY i.id",
            (account,),
        )
        entries: list[dict[str, object]] = []
        for row in rows:
            entry: dict[str, object] = {
                "file": row["file_name"],
                "identificativo_sdi": row["identificativo_sdi"],
                "received": row["received"],
                "paths": list(self.paths(Item.INCOMING, row["id"])),
                "sha256": row["sha256"],
            }
            if row["first_file"] is not None:
                entry["warnings"] = [same_content_warning(row["first_received"], row["first_file"])]
            entries.append(entry)
        return entries

    def quarantine_status(self, account: str) -> list[dict[str, object]]:
        """The ``quarantined`` list of ``status --json``, oldest first; ``path`` is the raw file as
        written (it may differ from the one planned by a clash suffix); ``source`` is where the
        message was found (``imap:<uidvalidity>/<uid>``, None for older entries)."""
        rows = self._db.execute(
            "SELECT what, reason, coalesce((SELECT w.path FROM written_path w WHERE w.item = ?"
            " AND w.item_id = q.id ORDER BY w.id LIMIT 1), q.path) AS path, at,"
            " (SELECT m.source FROM inbound_output o JOIN inbound_message m"
            "  ON m.id = o.inbound_id WHERE o.item = ? AND o.item_id = q.id LIMIT 1) AS source"
            " FROM quarantine q WHERE account = ? ORDER BY q.id",
            (Item.QUARANTINE.value, Item.QUARANTINE.value, account),
        )
        return [dict(row) for row in rows]
