"""The state store: one SQLite file (WAL) for all accounts, the source of truth.

Owns outgoing invoices and their audit trail, the learned SDI address, processed mailbox
messages, incoming invoices, notifications and receipts, quarantine entries and the paths written.
Time is always passed in. One connection per ``Store``, used from one thread (the event loop's):
do not share a ``Store`` across threads. Every statement is parameterised.
"""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from pecgateway.lifecycle import Event, State

__all__ = [
    "SCHEMA_VERSION",
    "Incoming",
    "Item",
    "Outgoing",
    "OutgoingEvent",
    "Store",
    "When",
]

When = datetime | str  # an aware datetime, or an ISO 8601 string already formatted
SCHEMA_VERSION = 1


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


class Store:
    """The SQLite store. Open with ``Store(path)`` (creates and migrates); use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version of the open file."""
        raise NotImplementedError

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
        raise NotImplementedError

    def duplicate_reason(self, account: str, file_name: str, sha256: str) -> str | None:
        """Why this file must not be sent, or None: a file name already used by an invoice that
        was not rejected by our checks (SDI would answer 00002; same stem, any case, with or
        without .p7m), or byte-identical content already queued or sent under another name."""
        raise NotImplementedError

    def find_outgoing(self, outgoing_id: int) -> Outgoing | None:
        """By row id."""
        raise NotImplementedError

    def find_outgoing_by_message_id(
        self, message_id: str, account: str | None = None
    ) -> Outgoing | None:
        """By our Message-ID (pass ``pec.normalize_message_id`` output)."""
        raise NotImplementedError

    def find_outgoing_by_file(self, account: str, file_name: str) -> Outgoing | None:
        """By SDI's ``NomeFile``: ``filename.same_invoice_file`` rules; the newest match."""
        raise NotImplementedError

    def find_outgoing_by_identificativo_sdi(
        self, account: str, identificativo_sdi: str
    ) -> Outgoing | None:
        """By SDI's file id (learned from the first RC/NS/MC)."""
        raise NotImplementedError

    def find_outgoing_by_sha256(self, account: str, sha256: str) -> Outgoing | None:
        """A non-rejected invoice with exactly these bytes, the newest."""
        raise NotImplementedError

    def find_outgoing_in_state(self, account: str, *states: State) -> list[Outgoing]:
        """Every invoice of ``account`` in one of ``states``, oldest first (e.g. ``SENDING``)."""
        raise NotImplementedError

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
        raise NotImplementedError

    def note(
        self, outgoing_id: int, event: str, *, at: When, source: str, detail: str = ""
    ) -> None:
        """Append an audit line without changing the state (an ignored or invalid event)."""
        raise NotImplementedError

    def events(self, outgoing_id: int) -> list[OutgoingEvent]:
        """The audit trail, oldest first."""
        raise NotImplementedError

    # ---- SDI address ------------------------------------------------------------------------
    def sdi_address(self, account: str, default: str = "sdi01@pec.fatturapa.it") -> str:
        """The SDI address to write to: the last one learned, else ``default``."""
        raise NotImplementedError

    def set_sdi_address(self, account: str, address: str, *, at: When, source: str) -> bool:
        """Remember the address SDI wrote from; True (and a history line) when it changed."""
        raise NotImplementedError

    def sdi_address_history(self, account: str) -> list[tuple[str, str, str]]:
        """``(at, address, source)`` of every change, oldest first."""
        raise NotImplementedError

    # ---- mailbox bookkeeping ----------------------------------------------------------------
    def is_processed(self, account: str, folder: str, uidvalidity: int, uid: int) -> bool:
        """Whether this mailbox message was already handled."""
        raise NotImplementedError

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
        """Remember a handled message (idempotent)."""
        raise NotImplementedError

    def is_processed_message_id(self, account: str, message_id: str) -> bool:
        """Whether a message with this (normalised) Message-ID was handled, in any folder."""
        raise NotImplementedError

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
        raise NotImplementedError

    def find_incoming(self, account: str, *, sha256: str) -> Incoming | None:
        """A received invoice with exactly these bytes (a repeated delivery)."""
        raise NotImplementedError

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
        raise NotImplementedError

    def orphans(self, account: str) -> list[dict[str, object]]:
        """Notifications and receipts about files we never sent."""
        raise NotImplementedError

    def record_quarantine(
        self, account: str, *, what: str, reason: str, path: str, at: When
    ) -> int:
        """Something we could not understand, kept at ``path`` (under the inbox folder)."""
        raise NotImplementedError

    def record_path(self, item: Item, item_id: int, path: str, *, at: When) -> None:
        """A file written for an item (path as written; status lists them)."""
        raise NotImplementedError

    def paths(self, item: Item, item_id: int) -> tuple[str, ...]:
        """The paths written for an item, in the order written."""
        raise NotImplementedError

    def snapshot(
        self, account: str, default_sdi_address: str = "sdi01@pec.fatturapa.it"
    ) -> dict[str, object]:
        """Exactly the ``status --json`` object of contracts.md section 2 for ``account``."""
        raise NotImplementedError
