"""The state store: one SQLite file (WAL) for all accounts, the source of truth.

Owns outgoing invoices and their audit trail, the learned SDI address, processed mailbox
messages, incoming invoices, notifications and receipts, quarantine entries and the paths written.
Time is always passed in. One connection per ``Store``, used from one thread (the event loop's):
do not share a ``Store`` across threads. Every statement is parameterised.
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pecgateway import lifecycle
from pecgateway.errors import ConfigError
from pecgateway.filename import invoice_stem, same_invoice_file
from pecgateway.lifecycle import Event, State

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Incoming",
    "Item",
    "Outgoing",
    "OutgoingEvent",
    "Store",
    "When",
]

When = datetime | str  # an aware datetime, or an ISO 8601 string already formatted
DEFAULT_SDI_ADDRESS = "sdi01@pec.fatturapa.it"

# Ordered schema migrations: MIGRATIONS[n] takes the schema from version n to n + 1. Append only.
MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE outgoing (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, file_name TEXT NOT NULL,
        file_key TEXT NOT NULL, sha256 TEXT NOT NULL, format TEXT, flow TEXT, state TEXT NOT NULL,
        message_id TEXT, identificativo_sdi TEXT, sdi_address TEXT,
        smtp_attempts INTEGER NOT NULL DEFAULT 0, sending_since TEXT, delivered_at TEXT,
        created TEXT NOT NULL, updated TEXT NOT NULL);
    CREATE INDEX outgoing_file ON outgoing (account, file_key);
    CREATE INDEX outgoing_sha256 ON outgoing (account, sha256);
    CREATE INDEX outgoing_state ON outgoing (account, state);
    CREATE UNIQUE INDEX outgoing_message_id ON outgoing (message_id) WHERE message_id IS NOT NULL;
    CREATE TABLE outgoing_event (
        id INTEGER PRIMARY KEY, outgoing_id INTEGER NOT NULL REFERENCES outgoing (id),
        at TEXT NOT NULL, event TEXT NOT NULL, detail TEXT NOT NULL, source TEXT NOT NULL,
        state TEXT NOT NULL);
    CREATE INDEX outgoing_event_outgoing ON outgoing_event (outgoing_id);
    CREATE TABLE processed (
        account TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,
        uid INTEGER NOT NULL, message_id TEXT, outcome TEXT NOT NULL, at TEXT NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid));
    CREATE INDEX processed_message_id ON processed (account, message_id);
    """,
    """
    CREATE INDEX outgoing_identificativo_sdi ON outgoing (account, identificativo_sdi);
    CREATE TABLE sdi_address (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, address TEXT NOT NULL, at TEXT NOT NULL,
        source TEXT NOT NULL);
    CREATE TABLE incoming (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, file_name TEXT NOT NULL,
        sha256 TEXT NOT NULL, identificativo_sdi TEXT, received TEXT NOT NULL,
        source TEXT NOT NULL);
    CREATE INDEX incoming_sha256 ON incoming (account, sha256);
    CREATE TABLE notification (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, kind TEXT NOT NULL, file_name TEXT,
        identificativo_sdi TEXT, message_id TEXT, outgoing_id INTEGER REFERENCES outgoing (id),
        received TEXT NOT NULL, source TEXT NOT NULL, detail TEXT NOT NULL);
    CREATE INDEX notification_outgoing ON notification (outgoing_id);
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, what TEXT NOT NULL, reason TEXT NOT NULL,
        path TEXT NOT NULL, at TEXT NOT NULL);
    CREATE TABLE written_path (
        id INTEGER PRIMARY KEY, item TEXT NOT NULL, item_id INTEGER NOT NULL, path TEXT NOT NULL,
        at TEXT NOT NULL);
    CREATE INDEX written_path_item ON written_path (item, item_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class Item(enum.Enum):
    """What a written path belongs to."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"
    NOTIFICATION = "notification"
    QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One line of an outgoing invoice's audit trail."""

    at: str
    event: str  # an Event value, or a free word for notes ("ignored", "invalid-transition")
    detail: str
    source: str  # "outbox", "smtp", "imap uid 42 (INBOX/1700000000)" ...
    state: str  # the state after the event


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An outgoing invoice file as the store knows it."""

    id: int
    account: str
    file_name: str
    sha256: str
    format: str | None
    flow: str | None  # "PA" | "B2B"
    state: State
    message_id: str | None  # normalised "<token@domain>", stored BEFORE the SMTP transaction
    identificativo_sdi: str | None
    sdi_address: str | None  # where it was (last) sent
    smtp_attempts: int
    sending_since: str | None  # when the current SENDING began (reconciliation after a crash)
    delivered_at: str | None  # first PEC consegna from SDI's mailbox (the 5-day clock)
    created: str
    updated: str


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


_OUTGOING_COLUMNS = (
    "id, account, file_name, sha256, format, flow, state, message_id, identificativo_sdi, "
    "sdi_address, smtp_attempts, sending_since, delivered_at, created, updated"
)


class Store:
    """The SQLite store. ``Store(path)`` creates and migrates the file; also a context manager.

    One connection, for the thread that created it (the event loop's); not thread-safe.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            self._db.execute(pragma)
        self._migrate()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
        for version in range(self.schema_version, len(MIGRATIONS)):
            with self._transaction() as db:
                for statement in _statements(MIGRATIONS[version]):
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (version + 1,))
        if self.schema_version > len(MIGRATIONS):
            raise ConfigError(
                f"{self.path} has schema version {self.schema_version}, newer than this "
                f"pecgateway knows ({len(MIGRATIONS)}): upgrade pecgateway",
                key="store_path",
            )

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])

    # ---- outgoing invoices -------------------------------------------------------------------
    def record_outgoing(
        self,
        account: str,
        *,
        file_name: str,
        sha256: str,
        at: When,
        source: str = "outbox",
        format: str | None = None,
        flow: str | None = None,
    ) -> Outgoing:
        """A new outgoing invoice in state ``queued`` (audit event ``claimed``).

        Does not refuse duplicates: call ``duplicate_reason`` first.
        """
        now = _iso(at)
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO outgoing (account, file_name, file_key, sha256, format, flow, state,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    file_name,
                    _file_key(file_name),
                    sha256,
                    format,
                    flow,
                    State.QUEUED.value,
                    now,
                    now,
                ),
            )
            outgoing_id = _rowid(cursor)
            _append_event(db, outgoing_id, now, Event.CLAIMED.value, "", source, State.QUEUED)
        return self._require(outgoing_id)

    def duplicate_reason(
        self, account: str, file_name: str, sha256: str, *, exclude_id: int | None = None
    ) -> str | None:
        """Why this file must not be sent, or None.

        A file name already used by an invoice that was not rejected by our checks (SDI would
        answer 00002; same stem, any case, with or without .p7m), or byte-identical content
        already queued or sent under any name. ``exclude_id``: the file's own record.
        """
        same_name = self.find_outgoing_by_file(account, file_name)
        if same_name and same_name.id != exclude_id and same_name.state is not State.REJECTED:
            return (
                f"the file name {file_name} was already used by {same_name.file_name} (now "
                f"{same_name.state.value}): SDI refuses a name used before (error 00002); "
                "give the file a new progressivo"
            )
        same_bytes = self.find_outgoing_by_sha256(account, sha256)
        if same_bytes and same_bytes.id != exclude_id:
            return (
                f"the same bytes were already sent as {same_bytes.file_name} (now "
                f"{same_bytes.state.value}): an invoice is sent once; a corrected invoice is a "
                "new file"
            )
        return None

    def find_outgoing(self, outgoing_id: int) -> Outgoing | None:
        """By row id."""
        return self._one("id = ?", (outgoing_id,))

    def find_outgoing_by_message_id(
        self, message_id: str, account: str | None = None
    ) -> Outgoing | None:
        """By our Message-ID (pass ``pec.normalize_message_id`` output)."""
        key = _message_key(message_id)
        if account is None:
            return self._one("message_id = ?", (key,))
        return self._one("message_id = ? AND account = ?", (key, account))

    def find_outgoing_by_file(self, account: str, file_name: str) -> Outgoing | None:
        """By SDI's ``NomeFile`` (``filename.same_invoice_file``): the newest match, preferring
        one that was not rejected by our checks."""
        rows = self._many(
            "account = ? AND file_key = ? ORDER BY state = ?, id DESC",
            (account, _file_key(file_name), State.REJECTED.value),
        )
        return next((row for row in rows if same_invoice_file(row.file_name, file_name)), None)

    def find_outgoing_by_identificativo_sdi(
        self, account: str, identificativo_sdi: str
    ) -> Outgoing | None:
        """By SDI's file id (learned from the first RC/NS/MC)."""
        return self._one(
            "account = ? AND identificativo_sdi = ? ORDER BY id DESC",
            (account, identificativo_sdi.strip()),
        )

    def find_outgoing_by_sha256(self, account: str, sha256: str) -> Outgoing | None:
        """A non-rejected invoice with exactly these bytes, the newest."""
        return self._one(
            "account = ? AND sha256 = ? AND state != ? ORDER BY id DESC",
            (account, sha256.lower(), State.REJECTED.value),
        )

    def find_outgoing_in_state(self, account: str, *states: State) -> list[Outgoing]:
        """Every invoice of ``account`` in one of ``states``, oldest first (e.g. ``SENDING``)."""
        marks = ", ".join("?" for _ in states) or "NULL"
        return self._many(
            f"account = ? AND state IN ({marks}) ORDER BY id",
            (account, *(state.value for state in states)),
        )

    def transition(
        self,
        outgoing_id: int,
        event: Event,
        *,
        at: When,
        source: str,
        detail: str = "",
        message_id: str | None = None,
        identificativo_sdi: str | None = None,
        sdi_address: str | None = None,
    ) -> Outgoing:
        """Apply ``lifecycle.advance`` and append the event, in ONE transaction.

        Raises ``InvalidTransition`` (nothing written). Side effects by event: ``sending`` counts an
        SMTP attempt and sets ``sending_since``; the first ``avvenuta-consegna`` sets
        ``delivered_at``; non-None ``message_id``/``identificativo_sdi``/``sdi_address`` are stored.
        """
        now = _iso(at)
        with self._transaction() as db:
            current = self._require(outgoing_id)
            state = lifecycle.advance(current.state, event)
            sending = event is Event.SENDING
            db.execute(
                "UPDATE outgoing SET state = ?, updated = ?,"
                " smtp_attempts = smtp_attempts + ?,"
                " sending_since = CASE WHEN ? THEN ? ELSE sending_since END,"
                " delivered_at = CASE WHEN ? THEN coalesce(delivered_at, ?) ELSE delivered_at END,"
                " message_id = coalesce(?, message_id),"
                " identificativo_sdi = coalesce(?, identificativo_sdi),"
                " sdi_address = coalesce(?, sdi_address) WHERE id = ?",
                (
                    state.value,
                    now,
                    int(sending),
                    sending,
                    now,
                    event is Event.CONSEGNA,
                    now,
                    _message_key(message_id) if message_id else None,
                    identificativo_sdi.strip() if identificativo_sdi else None,
                    sdi_address,
                    outgoing_id,
                ),
            )
            _append_event(db, outgoing_id, now, event.value, detail, source, state)
        return self._require(outgoing_id)

    def note(
        self, outgoing_id: int, event: str, *, at: When, source: str, detail: str = ""
    ) -> None:
        """Append an audit line without changing the state (an ignored or invalid event)."""
        with self._transaction() as db:
            current = self._require(outgoing_id)
            _append_event(db, outgoing_id, _iso(at), event, detail, source, current.state)

    def events(self, outgoing_id: int) -> list[OutgoingEvent]:
        """The audit trail, oldest first."""
        rows = self._db.execute(
            "SELECT at, event, detail, source, state FROM outgoing_event"
            " WHERE outgoing_id = ? ORDER BY id",
            (outgoing_id,),
        )
        return [OutgoingEvent(**dict(row)) for row in rows]

    def _require(self, outgoing_id: int) -> Outgoing:
        found = self.find_outgoing(outgoing_id)
        if found is None:
            raise KeyError(f"no outgoing invoice with id {outgoing_id}")
        return found

    def _many(self, where: str, parameters: Sequence[object]) -> list[Outgoing]:
        rows = self._db.execute(
            f"SELECT {_OUTGOING_COLUMNS} FROM outgoing WHERE {where}",
            tuple(parameters),
        )
        return [_outgoing(row) for row in rows]

    def _one(self, where: str, parameters: Sequence[object]) -> Outgoing | None:
        found = self._many(where + " LIMIT 1" if "LIMIT" not in where else where, parameters)
        return found[0] if found else None

    # ---- SDI address ------------------------------------------------------------------------
    def sdi_address(self, account: str, default: str = DEFAULT_SDI_ADDRESS) -> str:
        """The SDI address to write to: the last one learned, else ``default``."""
        row = self._db.execute(
            "SELECT address FROM sdi_address WHERE account = ? ORDER BY id DESC LIMIT 1",
            (account,),
        ).fetchone()
        return str(row[0]) if row else default

    def set_sdi_address(self, account: str, address: str, *, at: When, source: str) -> bool:
        """Remember the address SDI wrote from; True (and a history line) when it changed."""
        address = address.strip().lower()
        with self._transaction() as db:
            row = db.execute(
                "SELECT address FROM sdi_address WHERE account = ? ORDER BY id DESC LIMIT 1",
                (account,),
            ).fetchone()
            if row is not None and row[0] == address:
                return False
            db.execute(
                "INSERT INTO sdi_address (account, address, at, source) VALUES (?, ?, ?, ?)",
                (account, address, _iso(at), source),
            )
        return True

    def sdi_address_history(self, account: str) -> list[tuple[str, str, str]]:
        """``(at, address, source)`` of every change, oldest first."""
        rows = self._db.execute(
            "SELECT at, address, source FROM sdi_address WHERE account = ? ORDER BY id",
            (account,),
        )
        return [(row[0], row[1], row[2]) for row in rows]

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
        key = _message_key(message_id) if message_id else None
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO processed (account, folder, uidvalidity, uid, message_id,"
                " outcome, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (account, folder, uidvalidity, uid, key, outcome, _iso(at)),
            )

    def is_processed_message_id(self, account: str, message_id: str) -> bool:
        """Whether a message with this (normalised) Message-ID was handled, in any folder."""
        row = self._db.execute(
            "SELECT 1 FROM processed WHERE account = ? AND message_id = ?",
            (account, _message_key(message_id)),
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
            (account, file_name, sha256.lower(), identificativo_sdi, _iso(received), source),
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
                _message_key(message_id) if message_id else None,
                outgoing_id,
                _iso(received),
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
            (account, what, reason, path, _iso(at)),
        )

    def record_path(self, item: Item, item_id: int, path: str, *, at: When) -> None:
        """A file written for an item (path as written; status lists them)."""
        self._insert(
            "INSERT INTO written_path (item, item_id, path, at) VALUES (?, ?, ?, ?)",
            (item.value, item_id, path, _iso(at)),
        )

    def paths(self, item: Item, item_id: int) -> tuple[str, ...]:
        """The paths written for an item, in the order written."""
        rows = self._db.execute(
            "SELECT path FROM written_path WHERE item = ? AND item_id = ? ORDER BY id",
            (item.value, item_id),
        )
        return tuple(row[0] for row in rows)

    def _insert(self, sql: str, parameters: Sequence[object]) -> int:
        with self._transaction() as db:
            return _rowid(db.execute(sql, tuple(parameters)))

    # ---- status ------------------------------------------------------------------------------
    def snapshot(
        self, account: str, default_sdi_address: str = DEFAULT_SDI_ADDRESS
    ) -> dict[str, object]:
        """Exactly the ``status --json`` object of contracts.md section 2 for ``account``.

        Extra fields: outgoing ``flow``, ``sha256``, ``created``, ``meaning``, ``paths``, events'
        ``source`` and ``state``; top-level ``sdi_address_history`` and ``orphans``.
        """
        return {
            "sdi_address": self.sdi_address(account, default_sdi_address),
            "outgoing": [
                self._outgoing_json(item)
                for item in self._many("account = ? ORDER BY id", (account,))
            ],
            "incoming": self._incoming_json(account),
            "quarantined": self._quarantine_json(account),
            "sdi_address_history": [
                {"at": at, "address": address, "source": source}
                for at, address, source in self.sdi_address_history(account)
            ],
            "orphans": self.orphans(account),
        }

    def _outgoing_json(self, item: Outgoing) -> dict[str, object]:
        return {
            "file": item.file_name,
            "state": item.state.value,
            "message_id": item.message_id,
            "identificativo_sdi": item.identificativo_sdi,
            "updated": item.updated,
            "events": [
                {
                    "at": e.at,
                    "event": e.event,
                    "detail": e.detail,
                    "source": e.source,
                    "state": e.state,
                }
                for e in self.events(item.id)
            ],
            "flow": item.flow,
            "sha256": item.sha256,
            "created": item.created,
            "meaning": lifecycle.describe(item.state, item.flow or "B2B"),
            "paths": list(self.paths(Item.OUTGOING, item.id)),
        }

    def _incoming_json(self, account: str) -> list[dict[str, object]]:
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

    def _quarantine_json(self, account: str) -> list[dict[str, object]]:
        rows = self._db.execute(
            "SELECT what, reason, path, at FROM quarantine WHERE account = ? ORDER BY id",
            (account,),
        )
        return [dict(row) for row in rows]


_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
)


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def _iso(when: When) -> str:
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        raise ValueError(f"{when!r}: times stored must carry a time zone")
    return when.isoformat(timespec="seconds")


def _file_key(file_name: str) -> str:
    return invoice_stem(file_name).casefold()


def _message_key(message_id: str) -> str:
    """``<Local@Domain.IT>`` -> ``<Local@domain.it>`` (as ``pec.normalize_message_id`` does)."""
    inner = "".join(message_id.split()).strip("<>")
    local, at, domain = inner.rpartition("@")
    return f"<{local}@{domain.lower()}>" if at else f"<{inner}>"


def _rowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
        raise RuntimeError("sqlite gave no row id")
    return cursor.lastrowid


def _append_event(
    db: sqlite3.Connection,
    outgoing_id: int,
    at: str,
    event: str,
    detail: str,
    source: str,
    state: State,
) -> None:
    db.execute(
        "INSERT INTO outgoing_event (outgoing_id, at, event, detail, source, state)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (outgoing_id, at, event, detail, source, state.value),
    )


def _outgoing(row: sqlite3.Row) -> Outgoing:
    values: dict[str, Any] = dict(row)
    values["state"] = State(values["state"])
    return Outgoing(**values)
