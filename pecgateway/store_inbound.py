"""The store's records of what the mailbox brought: processed messages, suppliers' invoices,
notifications and receipts, quarantine entries, and the paths written for each item.

Part of ``Store`` (store.py mixes these methods in); times are passed in, statements parameterised.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pecgateway.store_db import Database, When, iso, message_key

__all__ = ["InboundRecords", "Incoming", "Item"]


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
        """The ``incoming`` list of ``status --json``, oldest first."""
        rows = self._db.execute(
            "SELECT id, file_name, identificativo_sdi, received, sha256 FROM incoming"
            " WHERE account = ? ORDER BY id",
            (account,),
        )
        return [
            {
                "file": row["file_name"],
                "identificativo_sdi": row["identificativo_sdi"],
                "received": row["received"],
                "paths": list(self.paths(Item.INCOMING, row["id"])),
                "sha256": row["sha256"],
            }
            for row in rows
        ]

    def quarantine_status(self, account: str) -> list[dict[str, object]]:
        """The ``quarantined`` list of ``status --json``, oldest first."""
        rows = self._db.execute(
            "SELECT what, reason, path, at FROM quarantine WHERE account = ? ORDER BY id",
            (account,),
        )
        return [dict(row) for row in rows]
