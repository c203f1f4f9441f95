"""The store's SQLite file: connection, pragmas, transactions, the schema and its migrations.

Owns what every part of the store shares: one connection (WAL) per store, ``atomic()`` transactions
that nest as savepoints, the append-only ``MIGRATIONS``, and the value rules (times, Message-IDs).
The records themselves live in store.py (outgoing) and store_inbound.py (what the mailbox brought).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from pecgateway.errors import ConfigError

__all__ = [
    "DEFAULT_SDI_ADDRESS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Database",
    "StoreUnusable",
    "When",
    "iso",
    "message_key",
    "row_id",
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
    """
    CREATE TABLE inbound_message (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL, sha256 TEXT NOT NULL, message_id TEXT,
        outcome TEXT NOT NULL, source TEXT NOT NULL, at TEXT NOT NULL);
    CREATE UNIQUE INDEX inbound_message_sha256 ON inbound_message (account, sha256);
    CREATE TABLE inbound_output (
        id INTEGER PRIMARY KEY, inbound_id INTEGER NOT NULL REFERENCES inbound_message (id),
        item TEXT NOT NULL, item_id INTEGER NOT NULL, relpath TEXT NOT NULL, data BLOB,
        path TEXT);
    CREATE INDEX inbound_output_pending ON inbound_output (inbound_id) WHERE path IS NULL;
    CREATE INDEX written_path_path ON written_path (path);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
_TABLES = frozenset(
    re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", "\n".join(MIGRATIONS), re.IGNORECASE)
)

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
)


class StoreUnusable(ConfigError):
    """The store file cannot be opened or migrated: damaged, not a store, a folder, locked.

    A ``ConfigError`` (key ``store_path``): the service cannot start, and the message says what to
    do. Errors after a successful open are left to the caller (an account-level failure).
    """

    def __init__(self, path: Path, exc: sqlite3.Error) -> None:
        super().__init__(f"{path}: {_what_to_do(path, exc)}", key="store_path")
        self.path = path


def _what_to_do(path: Path, exc: sqlite3.Error) -> str:
    words = str(exc)
    if path.is_dir():
        return (
            "is a folder, not a store file: set store_path to a file (pecgateway creates it) or "
            "move the folder aside"
        )
    if "locked" in words or "busy" in words:
        return (
            f"the store is locked by another program ({words}): stop it (another pecgateway, an "
            "sqlite3 shell) and try again"
        )
    if isinstance(exc, sqlite3.OperationalError):
        return (
            f"cannot use the store ({words}): the file and its folder must exist, be readable "
            "and writable by the user running pecgateway, and the disk must have space"
        )
    return (
        f"the store is damaged ({words}): restore it from your backup, or move it aside to start "
        "a new one — the history of sent invoices would be lost"
    )


class Database:
    """One SQLite connection, migrated on open; also a context manager.

    For the thread that created it (the event loop's); not thread-safe. Raises ``StoreUnusable``
    when the file cannot be opened or migrated.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._depth = 0
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnusable(path, exc) from exc
        try:
            self._open()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreUnusable(path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        self._db.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            self._db.execute(pragma)
        self._migrate()
        self._check_tables()

    def _check_tables(self) -> None:
        """Every table the migrations made is there (a dropped one is damage, not a new store)."""
        present = {
            str(row[0])
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        missing = sorted(_TABLES - present)
        if missing:
            raise sqlite3.DatabaseError(f"tables missing: {', '.join(missing)}")

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
    def atomic(self) -> Iterator[None]:
        """Everything written inside the block commits together, or not at all.

        Nests: an inner block is a savepoint (its failure undoes only its own writes when the
        caller catches the error); the outermost block is the transaction.
        """
        with self._transaction():
            yield

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        begin, commit, undo = (
            ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",))
            if self._depth == 0
            else ("SAVEPOINT nested", "RELEASE nested", ("ROLLBACK TO nested", "RELEASE nested"))
        )
        self._db.execute(begin)
        self._depth += 1
        try:
            yield self._db
        except BaseException:
            self._depth -= 1
            for statement in undo:
                self._db.execute(statement)
            raise
        self._depth -= 1
        self._db.execute(commit)

    def _insert(self, sql: str, parameters: Sequence[object]) -> int:
        with self._transaction() as db:
            return row_id(db.execute(sql, tuple(parameters)))

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


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def iso(when: When) -> str:
    """A time as stored: ISO 8601 to the second; naive datetimes are refused (ValueError)."""
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        raise ValueError(f"{when!r}: times stored must carry a time zone")
    return when.isoformat(timespec="seconds")


def message_key(message_id: str) -> str:
    """``<Local@Domain.IT>`` -> ``<Local@domain.it>`` (as ``pec.normalize_message_id`` does)."""
    inner = "".join(message_id.split()).strip("<>")
    local, at, domain = inner.rpartition("@")
    return f"<{local}@{domain.lower()}>" if at else f"<{inner}>"


def row_id(cursor: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just wrote."""
    if cursor.lastrowid is None:  # pragma: no cover - sqlite always sets it after an INSERT
        raise RuntimeError("sqlite gave no row id")
    return cursor.lastrowid
