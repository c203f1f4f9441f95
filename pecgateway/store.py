"""The state store: one SQLite file (WAL) for all accounts, the source of truth.

``Store`` owns outgoing invoices and their audit trail, the learned SDI address and the status
snapshot; it mixes in the inbound records (store_inbound.py) and the connection, transactions and
migrations (store_db.py). Time is always passed in. One connection per ``Store``, used from one
thread (the event loop's): do not share a ``Store`` across threads. Every statement is parameterised.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pecgateway import lifecycle
from pecgateway.filename import invoice_stem, same_invoice_file
from pecgateway.lifecycle import Event, State
from pecgateway.store_db import (
    DEFAULT_SDI_ADDRESS,
    MIGRATIONS,
    SCHEMA_VERSION,
    When,
    iso,
    message_key,
    row_id,
)
from pecgateway.store_inbound import InboundMessage, InboundRecords, Incoming, Item, PlannedOutput

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SMTP_DEFERRED",
    "InboundMessage",
    "Incoming",
    "Item",
    "Outgoing",
    "OutgoingEvent",
    "PlannedOutput",
    "Store",
    "When",
]


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


SMTP_DEFERRED = "smtp-deferred"  # outbound.SMTP_DEFERRED: the last SMTP try surely failed

_OUTGOING_COLUMNS = (
    "id, account, file_name, sha256, format, flow, state, message_id, identificativo_sdi, "
    "sdi_address, smtp_attempts, sending_since, delivered_at, created, updated"
)


class Store(InboundRecords):
    """The SQLite store. ``Store(path)`` creates and migrates the file; also a context manager.

    One connection, for the thread that created it (the event loop's); not thread-safe.
    ``atomic()`` groups several calls into one transaction.
    """

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
        now = iso(at)
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
            outgoing_id = row_id(cursor)
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
        key = message_key(message_id)
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
        now = iso(at)
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
                    message_key(message_id) if message_id else None,
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
            _append_event(db, outgoing_id, iso(at), event, detail, source, current.state)

    def events(self, outgoing_id: int) -> list[OutgoingEvent]:
        """The audit trail, oldest first."""
        rows = self._db.execute(
            "SELECT at, event, detail, source, state FROM outgoing_event"
            " WHERE outgoing_id = ? ORDER BY id",
            (outgoing_id,),
        )
        return [OutgoingEvent(**dict(row)) for row in rows]

    def outgoing_with_event(self, event: str) -> set[int]:
        """The ids of outgoing invoices (any account) whose audit trail holds ``event``."""
        rows = self._db.execute(
            "SELECT DISTINCT outgoing_id FROM outgoing_event WHERE event = ?", (event,)
        )
        return {int(row[0]) for row in rows}

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
                (account, address, iso(at), source),
            )
        return True

    def sdi_address_history(self, account: str) -> list[tuple[str, str, str]]:
        """``(at, address, source)`` of every change, oldest first."""
        rows = self._db.execute(
            "SELECT at, address, source FROM sdi_address WHERE account = ? ORDER BY id",
            (account,),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    # ---- interrupted sends -------------------------------------------------------------------
    def send_interrupted(self, item: Outgoing) -> bool:
        """A ``sending`` invoice whose SMTP transaction was cut short (no reply recorded): it may
        have reached the provider, so it waits for its ACCETTAZIONE before being resent."""
        if item.state is not State.SENDING:
            return False
        events = self.events(item.id)
        return not (events and events[-1].event == SMTP_DEFERRED)

    def resend_at(self, item: Outgoing, resend_after_s: float) -> str | None:
        """When a ``sending`` invoice is sent again unless its ACCETTAZIONE arrives first."""
        if item.sending_since is None:
            return None
        since = datetime.fromisoformat(item.sending_since)
        return iso(since + timedelta(seconds=resend_after_s))

    def next_action(self, item: Outgoing, resend_after_s: float | None = None) -> str | None:
        """What happens next to an invoice waiting on pecgateway itself (None: see ``meaning``)."""
        if item.state is State.QUEUED:
            return "sent at the next outbox pass"
        if item.state is not State.SENDING:
            return None
        if not self.send_interrupted(item):
            return "the last attempt to send it failed: tried again at the next outbox pass"
        when = (
            f"at {self.resend_at(item, resend_after_s)}"
            if resend_after_s is not None and item.sending_since
            else "after resend_after_s"
        )
        return (
            f"sending was interrupted at {item.sending_since} before the server answered: it "
            f"may have reached the provider, so it is resent {when} unless its ACCETTAZIONE "
            "arrives first"
        )

    # ---- status ------------------------------------------------------------------------------
    def snapshot(
        self,
        account: str,
        default_sdi_address: str = DEFAULT_SDI_ADDRESS,
        *,
        resend_after_s: float | None = None,
    ) -> dict[str, object]:
        """Exactly the ``status --json`` object of contracts.md section 2 for ``account``.

        Extra fields: outgoing ``flow``, ``sha256``, ``created``, ``meaning``, ``next_action``
        (``next_action()``; pass the account's ``resend_after_s`` to get a time), ``paths`` (the
        sent copy and every receipt and notification filed for it), events' ``source`` and
        ``state``; top-level ``sdi_address_history`` and ``orphans``.
        """
        return {
            "sdi_address": self.sdi_address(account, default_sdi_address),
            "outgoing": [
                self._outgoing_json(item, resend_after_s)
                for item in self._many("account = ? ORDER BY id", (account,))
            ],
            "incoming": self.incoming_status(account),
            "quarantined": self.quarantine_status(account),
            "sdi_address_history": [
                {"at": at, "address": address, "source": source}
                for at, address, source in self.sdi_address_history(account)
            ],
            "orphans": self.orphans(account),
        }

    def _outgoing_json(
        self, item: Outgoing, resend_after_s: float | None = None
    ) -> dict[str, object]:
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
            "next_action": self.next_action(item, resend_after_s),
            "paths": [*self.paths(Item.OUTGOING, item.id), *self._notification_paths(item.id)],
        }

    def _notification_paths(self, outgoing_id: int) -> list[str]:
        """The files written for the receipts and SDI notifications about one outgoing invoice."""
        rows = self._db.execute(
            "SELECT id FROM notification WHERE outgoing_id = ? ORDER BY id", (outgoing_id,)
        ).fetchall()
        return [path for row in rows for path in self.paths(Item.NOTIFICATION, row[0])]


def _file_key(file_name: str) -> str:
    return invoice_stem(file_name).casefold()


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
