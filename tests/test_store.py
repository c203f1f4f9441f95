"""The SQLite store on real files: migrations, outgoing lifecycle and audit, lookups, status."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pecgateway.errors import ConfigError, InvalidTransition
from pecgateway.lifecycle import Event, State
from pecgateway.store import MIGRATIONS, SCHEMA_VERSION, Item, PlannedOutput, Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NAME = "IT01234567890_00001.xml"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "pecgateway.sqlite3") as opened:
        yield opened


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def sent(store: Store, name: str = NAME, sha256: str = "aa" * 32, account: str = "main") -> int:
    item = store.record_outgoing(account, file_name=name, sha256=sha256, at=at(0), flow="B2B")
    store.transition(
        item.id, Event.SENDING, at=at(1), source="outbox", message_id=f"<{name}@pec.example.it>"
    )
    store.transition(item.id, Event.SENT, at=at(2), source="smtp")
    return item.id


# ---- schema -------------------------------------------------------------------------------------
def test_new_store_is_at_the_latest_schema_version_in_wal_mode(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        assert store.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    db = sqlite3.connect(tmp_path / "s.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        outgoing_id = sent(store)
    with Store(path) as store, Store(path) as again:
        assert store.schema_version == again.schema_version == SCHEMA_VERSION
        found = again.find_outgoing(outgoing_id)
        assert found is not None
        assert found.state is State.SENT


def test_upgrade_from_version_1_keeps_rows_and_adds_the_new_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute(
        "INSERT INTO outgoing (account, file_name, file_key, sha256, state, created, updated)"
        " VALUES ('main', ?, ?, 'ab', 'sent', 'then', 'then')",
        (NAME, "it01234567890_00001"),
    )
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        old = store.find_outgoing_by_file("main", NAME)
        assert old is not None
        assert old.state is State.SENT
        assert store.set_sdi_address("main", "sdi48@pec.fatturapa.it", at=T0, source="test")


def test_a_store_from_a_newer_pecgateway_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="upgrade pecgateway"):
        Store(path)


# ---- outgoing -----------------------------------------------------------------------------------
def test_record_outgoing_is_queued_with_a_claimed_event(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="AB", at=T0, format="FPR12")
    assert item.state is State.QUEUED
    assert item.format == "FPR12"
    assert [(e.event, e.state, e.source) for e in store.events(item.id)] == [
        ("claimed", "queued", "outbox")
    ]


def test_transition_applies_the_lifecycle_and_appends_the_audit_trail(store: Store) -> None:
    outgoing_id = sent(store)
    item = store.transition(
        outgoing_id, Event.RC, at=at(60), source="imap uid 42", identificativo_sdi="6782414"
    )
    assert item.state is State.SDI_DELIVERED
    assert item.identificativo_sdi == "6782414"
    assert item.updated == at(60).isoformat()
    trail = store.events(outgoing_id)
    assert [e.event for e in trail] == ["claimed", "sending", "sent", "RC"]
    assert trail[-1].source == "imap uid 42"


def test_invalid_transition_writes_nothing(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="ab", at=T0)
    with pytest.raises(InvalidTransition):
        store.transition(item.id, Event.RC, at=at(1), source="imap uid 1", identificativo_sdi="9")
    after = store.find_outgoing(item.id)
    assert after is not None
    assert (after.state, after.identificativo_sdi) == (State.QUEUED, None)
    assert len(store.events(item.id)) == 1


def test_sending_stores_message_id_before_smtp_and_counts_attempts(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="ab", at=T0)
    first = store.transition(
        item.id,
        Event.SENDING,
        at=at(1),
        source="outbox",
        message_id="<Tok@PEC.Example.it>",
        sdi_address="sdi01@pec.fatturapa.it",
    )
    again = store.transition(item.id, Event.SENDING, at=at(5), source="smtp", detail="retry")
    assert first.message_id == "<Tok@pec.example.it>"
    assert first.sdi_address == "sdi01@pec.fatturapa.it"
    assert (again.smtp_attempts, again.sending_since) == (2, at(5).isoformat())
    assert again.message_id == "<Tok@pec.example.it>"


def test_first_consegna_starts_the_sdi_clock(store: Store) -> None:
    outgoing_id = sent(store)
    store.transition(outgoing_id, Event.CONSEGNA, at=at(10), source="imap uid 3")
    item = store.transition(outgoing_id, Event.CONSEGNA, at=at(20), source="imap uid 4")
    assert item.delivered_at == at(10).isoformat()


def test_note_keeps_an_event_without_changing_state(store: Store) -> None:
    outgoing_id = sent(store)
    store.note(outgoing_id, "ignored", at=at(9), source="imap uid 7", detail="NS after RC")
    item = store.find_outgoing(outgoing_id)
    assert item is not None
    assert item.state is State.SENT
    assert store.events(outgoing_id)[-1].detail == "NS after RC"


def test_crash_reconciliation_finds_sending_invoices_by_message_id(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="ab", at=T0)
    store.transition(item.id, Event.SENDING, at=at(1), source="outbox", message_id="<x@pec.it>")
    (pending,) = store.find_outgoing_in_state("main", State.SENDING)
    assert pending.id == item.id
    found = store.find_outgoing_by_message_id("<x@PEC.IT>")
    assert found is not None
    after = store.transition(found.id, Event.ACCETTAZIONE, at=at(30), source="imap uid 9")
    assert after.state is State.ACCEPTED
    assert store.find_outgoing_in_state("main", State.SENDING) == []


def test_message_id_lookup_respects_the_account(store: Store) -> None:
    sent(store, account="main")
    assert store.find_outgoing_by_message_id(f"<{NAME}@pec.example.it>", "other") is None
    assert store.find_outgoing_by_message_id(f"<{NAME}@pec.example.it>", "main") is not None


@pytest.mark.parametrize(
    "nome_file", [NAME, NAME.lower(), NAME + ".p7m", "IT01234567890_00001.XML.P7M"]
)
def test_file_lookup_follows_nomefile_rules(store: Store, nome_file: str) -> None:
    outgoing_id = sent(store)
    found = store.find_outgoing_by_file("main", nome_file)
    assert found is not None
    assert found.id == outgoing_id


def test_file_lookup_does_not_confuse_xml_and_zip_or_other_progressivi(store: Store) -> None:
    sent(store)
    assert store.find_outgoing_by_file("main", "IT01234567890_00001.zip") is None
    assert store.find_outgoing_by_file("main", "IT01234567890_00002.xml") is None
    assert store.find_outgoing_by_file("other", NAME) is None


def test_file_lookup_prefers_the_invoice_that_was_sent_over_a_rejected_drop(store: Store) -> None:
    outgoing_id = sent(store)
    again = store.record_outgoing("main", file_name=NAME, sha256="bb", at=at(50))
    store.transition(again.id, Event.REJECTED, at=at(51), source="outbox")
    found = store.find_outgoing_by_file("main", NAME)
    assert found is not None
    assert found.id == outgoing_id


def test_identificativo_sdi_lookup(store: Store) -> None:
    outgoing_id = sent(store)
    store.transition(outgoing_id, Event.MC, at=at(9), source="imap", identificativo_sdi=" 123 ")
    found = store.find_outgoing_by_identificativo_sdi("main", "123")
    assert found is not None
    assert found.state is State.SDI_NOT_DELIVERED


def test_a_file_name_already_used_is_refused_with_sdi_error_00002(store: Store) -> None:
    sent(store)
    reason = store.duplicate_reason("main", NAME.lower() + ".p7m", "cc" * 32)
    assert reason is not None
    assert "00002" in reason
    assert NAME in reason


def test_byte_identical_file_already_sent_is_refused(store: Store) -> None:
    sent(store, sha256="dd" * 32)
    reason = store.duplicate_reason("main", "IT01234567890_00002.xml", "DD" * 32)
    assert reason is not None
    assert "same bytes" in reason


def test_a_name_used_only_by_a_rejected_file_may_be_used_again(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="ab", at=T0)
    store.transition(item.id, Event.REJECTED, at=at(1), source="outbox")
    assert store.duplicate_reason("main", NAME, "ab") is None


def test_duplicate_check_ignores_the_files_own_record(store: Store) -> None:
    item = store.record_outgoing("main", file_name=NAME, sha256="ab", at=T0)
    assert store.duplicate_reason("main", NAME, "ab") is not None
    assert store.duplicate_reason("main", NAME, "ab", exclude_id=item.id) is None


def test_resend_after_ns_is_a_new_record_under_a_new_name(store: Store) -> None:
    first = sent(store)
    store.transition(first, Event.NS, at=at(60), source="imap uid 5")
    second = sent(store, name="IT01234567890_00002.xml", sha256="ee" * 32)
    assert second != first
    states = [item.state for item in store.find_outgoing_in_state("main", *State)]
    assert states == [State.SDI_REJECTED, State.SENT]


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="time zone"):
        store.record_outgoing("main", file_name=NAME, sha256="ab", at=datetime(2026, 1, 1))


# ---- SDI address --------------------------------------------------------------------------------
def test_sdi_address_defaults_until_learned_then_logs_each_change(store: Store) -> None:
    assert store.sdi_address("main") == "sdi01@pec.fatturapa.it"
    assert store.set_sdi_address("main", "SDI48@pec.fatturapa.it", at=at(1), source="imap uid 1")
    assert not store.set_sdi_address("main", "sdi48@pec.fatturapa.it", at=at(2), source="uid 2")
    assert store.set_sdi_address("main", "sdi03@pec.fatturapa.it", at=at(3), source="imap uid 3")
    assert store.sdi_address("main") == "sdi03@pec.fatturapa.it"
    assert store.sdi_address("other") == "sdi01@pec.fatturapa.it"
    assert [address for _, address, _ in store.sdi_address_history("main")] == [
        "sdi48@pec.fatturapa.it",
        "sdi03@pec.fatturapa.it",
    ]


# ---- mailbox ------------------------------------------------------------------------------------
def test_processed_messages_are_keyed_by_uidvalidity_and_uid(store: Store) -> None:
    store.mark_processed("main", "INBOX", 1700, 42, at=T0, message_id="<m@X.it>", outcome="rc")
    store.mark_processed("main", "INBOX", 1700, 42, at=at(5), outcome="again")
    assert store.is_processed("main", "INBOX", 1700, 42)
    assert not store.is_processed("main", "INBOX", 1701, 42)
    assert not store.is_processed("other", "INBOX", 1700, 42)
    assert store.is_processed_message_id("main", "<m@x.it>")
    assert not store.is_processed_message_id("main", "<n@x.it>")


# ---- incoming, notifications, quarantine, snapshot -------------------------------------------------
def test_incoming_invoice_with_its_paths(store: Store) -> None:
    incoming_id = store.record_incoming(
        "main",
        file_name="IT09876543210_abc12.xml.p7m",
        sha256="FF" * 32,
        identificativo_sdi="111",
        received=T0,
        source="imap uid 8",
    )
    store.record_path(Item.INCOMING, incoming_id, "fatture-ricevute/2026/12/a.xml.p7m", at=T0)
    store.record_path(Item.INCOMING, incoming_id, "fatture-ricevute/2026/12/a.xml", at=T0)
    found = store.find_incoming("main", sha256="ff" * 32)
    assert found is not None
    assert found.paths == ("fatture-ricevute/2026/12/a.xml.p7m", "fatture-ricevute/2026/12/a.xml")
    assert store.find_incoming("other", sha256="ff" * 32) is None


def test_notifications_about_unknown_files_are_orphans(store: Store) -> None:
    outgoing_id = sent(store)
    store.record_notification(
        "main", kind="RC", file_name=NAME, received=T0, source="uid 1", outgoing_id=outgoing_id
    )
    orphan = store.record_notification(
        "main",
        kind="accettazione",
        file_name=None,
        received=T0,
        source="imap uid 2",
        outgoing_id=None,
        message_id="<Other@Program.it>",
    )
    store.record_path(Item.NOTIFICATION, orphan, "ricevute-pec/2026/12/x.eml", at=T0)
    (only,) = store.orphans("main")
    assert only["kind"] == "accettazione"
    assert only["message_id"] == "<Other@program.it>"
    assert only["paths"] == ["ricevute-pec/2026/12/x.eml"]


def test_snapshot_is_exactly_the_status_json_object(store: Store) -> None:
    outgoing_id = sent(store)
    store.transition(outgoing_id, Event.RC, at=at(9), source="uid 4", identificativo_sdi="6782414")
    store.record_path(Item.OUTGOING, outgoing_id, "inviate/2026/12/" + NAME, at=at(2))
    incoming_id = store.record_incoming(
        "main",
        file_name="IT09876543210_abc12.xml.p7m",
        sha256="ab",
        identificativo_sdi="111",
        received=at(3),
        source="uid 5",
    )
    store.record_path(Item.INCOMING, incoming_id, "fatture-ricevute/2026/12/x.xml.p7m", at=T0)
    store.record_quarantine(
        "main", what="imap uid 42", reason="not a mail", path="quarantena/2026/12/42.eml", at=T0
    )
    store.set_sdi_address("main", "sdi48@pec.fatturapa.it", at=at(9), source="uid 4")

    snapshot: Any = json.loads(json.dumps(store.snapshot("main")))  # and it is plain JSON

    assert snapshot["sdi_address"] == "sdi48@pec.fatturapa.it"
    (outgoing,) = snapshot["outgoing"]
    assert {"file", "state", "message_id", "identificativo_sdi", "updated", "events"} <= set(
        outgoing
    )
    assert outgoing["file"] == NAME
    assert outgoing["state"] == "sdi-delivered"
    assert outgoing["message_id"] == f"<{NAME}@pec.example.it>"
    assert outgoing["identificativo_sdi"] == "6782414"
    assert outgoing["updated"] == at(9).isoformat()
    assert [e["event"] for e in outgoing["events"]] == ["claimed", "sending", "sent", "RC"]
    assert {"at", "event", "detail"} <= set(outgoing["events"][0])
    assert outgoing["paths"] == ["inviate/2026/12/" + NAME]
    assert snapshot["incoming"] == [
        {
            "file": "IT09876543210_abc12.xml.p7m",
            "identificativo_sdi": "111",
            "received": at(3).isoformat(),
            "paths": ["fatture-ricevute/2026/12/x.xml.p7m"],
            "sha256": "ab",
        }
    ]
    (quarantined,) = snapshot["quarantined"]
    assert {k: quarantined[k] for k in ("what", "reason", "path")} == {
        "what": "imap uid 42",
        "reason": "not a mail",
        "path": "quarantena/2026/12/42.eml",
    }


def test_snapshot_lists_the_receipts_and_notifications_filed_for_an_outgoing_invoice(
    store: Store,
) -> None:
    outgoing_id = sent(store)
    store.record_path(Item.OUTGOING, outgoing_id, "inviate/2026/12/" + NAME, at=at(2))
    for kind, path in (
        ("accettazione", "ricevute-pec/2026/12/IT01234567890_00001_accettazione.eml"),
        ("RC", "notifiche-sdi/2026/12/IT01234567890_00001_RC_001.xml"),
    ):
        item = store.record_notification(
            "main", kind=kind, file_name=NAME, received=at(3), source="x", outgoing_id=outgoing_id
        )
        store.record_path(Item.NOTIFICATION, item, path, at=at(3))
    orphan = store.record_notification(
        "main", kind="RC", file_name="other.xml", received=at(3), source="y", outgoing_id=None
    )
    store.record_path(Item.NOTIFICATION, orphan, "notifiche-sdi/2026/12/other_RC_001.xml", at=T0)
    snapshot: Any = store.snapshot("main")
    (outgoing,) = snapshot["outgoing"]
    assert outgoing["paths"] == [
        "inviate/2026/12/" + NAME,
        "ricevute-pec/2026/12/IT01234567890_00001_accettazione.eml",
        "notifiche-sdi/2026/12/IT01234567890_00001_RC_001.xml",
    ]


def test_snapshot_of_an_account_lists_only_its_own_items(store: Store) -> None:
    sent(store, account="alpha")
    assert store.snapshot("beta") == {
        "sdi_address": "sdi01@pec.fatturapa.it",
        "outgoing": [],
        "incoming": [],
        "quarantined": [],
        "sdi_address_history": [],
        "orphans": [],
    }


def test_sql_stays_parameterised_with_hostile_values(store: Store) -> None:
    hostile = "x'); DROP TABLE outgoing; --"
    item = store.record_outgoing(hostile, file_name=hostile, sha256=hostile, at=T0)
    found = store.find_outgoing_by_file(hostile, hostile)
    assert found is not None
    assert found.id == item.id


# ---- transactions and inbound units ---------------------------------------------------------------
def test_atomic_commits_every_write_together_or_none(store: Store) -> None:
    def crashing_unit() -> None:
        with store.atomic():
            store.record_outgoing("main", file_name=NAME, sha256="aa", at=T0)
            store.set_sdi_address("main", "sdi07@pec.fatturapa.it", at=T0, source="test")
            raise RuntimeError("crash inside the unit")

    with pytest.raises(RuntimeError, match="crash inside"):
        crashing_unit()
    assert store.find_outgoing_by_file("main", NAME) is None
    assert store.sdi_address_history("main") == []
    with store.atomic():
        item = store.record_outgoing("main", file_name=NAME, sha256="aa", at=T0)
        store.transition(item.id, Event.SENDING, at=T0, source="test", message_id="<a@b.it>")
    found = store.find_outgoing_by_file("main", NAME)
    assert found is not None
    assert found.state is State.SENDING


def test_a_refused_transition_inside_atomic_undoes_only_itself(store: Store) -> None:
    outgoing_id = sent(store)
    with store.atomic():
        store.note(outgoing_id, "before", at=at(3), source="test")
        with pytest.raises(InvalidTransition):
            store.transition(outgoing_id, Event.CLAIMED, at=at(4), source="test")
        store.note(outgoing_id, "after", at=at(5), source="test")
    assert [e.event for e in store.events(outgoing_id)][-2:] == ["before", "after"]


def _planned(item_id: int) -> list[PlannedOutput]:
    return [
        PlannedOutput(Item.NOTIFICATION, item_id, "ricevute-pec/2026/12/a.eml", b"raw"),
        PlannedOutput(Item.NOTIFICATION, item_id, "ricevute-pec/2026/12/a.eml.json", b"{}"),
    ]


def test_an_inbound_message_is_recorded_once_per_account_with_its_planned_files(
    store: Store,
) -> None:
    item_id = store.record_notification(
        "main", kind="RC", file_name=NAME, received=T0, source="imap:1/1", outgoing_id=None
    )
    inbound_id = store.record_inbound_message(
        "main",
        sha256="AB" * 32,
        message_id="<Opec1@PEC.it>",
        outcome="orphan",
        source="imap:1/1",
        at=T0,
        outputs=_planned(item_id),
    )
    seen = store.find_inbound_message("main", "ab" * 32)
    assert seen is not None
    assert (seen.id, seen.outcome, seen.message_id) == (inbound_id, "orphan", "<Opec1@pec.it>")
    assert store.find_inbound_message("other", "ab" * 32) is None
    with pytest.raises(sqlite3.IntegrityError):
        store.record_inbound_message(
            "main", sha256="ab" * 32, message_id=None, outcome="x", source="imap:2/1", at=T0
        )
    pending = store.pending_outputs(inbound_id)
    assert [output for _, output in pending] == _planned(item_id)


def test_a_written_output_is_recorded_as_a_path_and_no_longer_pending(store: Store) -> None:
    item_id = store.record_notification(
        "main", kind="RC", file_name=NAME, received=T0, source="imap:1/1", outgoing_id=None
    )
    inbound_id = store.record_inbound_message(
        "main",
        sha256="cd" * 32,
        message_id=None,
        outcome="orphan",
        source="imap:1/1",
        at=T0,
        outputs=_planned(item_id),
    )
    (first_id, _), (second_id, second) = store.pending_outputs(inbound_id)
    store.complete_output(first_id, "/inbox/ricevute-pec/2026/12/a.eml", at=T0)
    store.complete_output(first_id, "/inbox/elsewhere.eml", at=T0)  # a second call changes nothing
    assert store.pending_outputs(inbound_id) == [(second_id, second)]
    assert store.paths(Item.NOTIFICATION, item_id) == ("/inbox/ricevute-pec/2026/12/a.eml",)
    assert store.is_written_path("/inbox/ricevute-pec/2026/12/a.eml")
    assert not store.is_written_path("/inbox/elsewhere.eml")


def test_quarantine_status_shows_the_path_actually_written(store: Store) -> None:
    planned = "/inbox/quarantena/2026/12/imap-1-1.eml"
    item_id = store.record_quarantine("main", what="imap uid 1", reason="r", path=planned, at=T0)
    assert store.quarantine_status("main")[0]["path"] == planned
    written = "/inbox/quarantena/2026/12/imap-1-1 (2).eml"
    store.record_path(Item.QUARANTINE, item_id, written, at=T0)
    store.record_path(Item.QUARANTINE, item_id, written + ".reason.txt", at=T0)
    assert store.quarantine_status("main")[0]["path"] == written


def test_upgrade_from_version_2_adds_the_inbound_unit_tables(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.find_inbound_message("main", "00") is None
