"""status.document: contracts.md section 2 JSON, one account or several, overdue flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pecgateway import status
from pecgateway.config import Config
from pecgateway.errors import ConfigError
from pecgateway.lifecycle import Event
from pecgateway.store import Store
from tests.factory.gateway import account_table, write_config

NOW = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
SERVER = {"host": "127.0.0.1", "port": 9, "password": "pw"}


def _config(tmp_path: Path, *names: str) -> Config:
    tables = [
        account_table(tmp_path, n, address=f"{n}@pec.example.it", smtp=SERVER, imap=SERVER)
        for n in names
    ]
    return write_config(tmp_path, tmp_path / "schemas", tables)


def _sent(store: Store, account: str, name: str) -> int:
    record = store.record_outgoing(account, file_name=name, sha256=name.encode().hex(), at=NOW)
    store.transition(record.id, Event.SENDING, at=NOW, source="t", message_id=f"<{name}@x.it>")
    store.transition(record.id, Event.SENT, at=NOW, source="t")
    return record.id


def test_one_account_prints_the_contract_object_directly(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        _sent(store, "main", "IT01234567890_00001.xml")
        doc = status.document(store, config, NOW)
    assert {"sdi_address", "outgoing", "incoming", "quarantined"} <= set(doc)
    assert doc["sdi_address"] == "sdi01@pec.fatturapa.it"
    [item] = doc["outgoing"]
    assert {"file", "state", "message_id", "identificativo_sdi", "updated", "events"} <= set(item)
    assert item["state"] == "sent"
    assert [e["event"] for e in item["events"]] == ["claimed", "sending", "sent"]
    assert {"at", "event", "detail"} <= set(item["events"][0])


def test_several_accounts_are_keyed_by_name_and_one_can_be_selected(tmp_path: Path) -> None:
    config = _config(tmp_path, "alpha", "beta")
    with Store(config.store_path) as store:
        _sent(store, "beta", "IT01234567890_00007.xml")
        everything = status.document(store, config, NOW)
        beta = status.document(store, config, NOW, account="beta")
        with pytest.raises(ConfigError, match="alpha, beta"):
            status.document(store, config, NOW, account="gamma")
    assert set(everything) == {"accounts"}
    assert set(everything["accounts"]) == {"alpha", "beta"}
    assert everything["accounts"]["alpha"]["outgoing"] == []
    assert beta["outgoing"][0]["file"] == "IT01234567890_00007.xml"


def test_no_sdi_outcome_five_days_after_delivery_is_flagged(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        store.transition(outgoing_id, Event.CONSEGNA, at=NOW, source="t")
        fresh = status.document(store, config, NOW + timedelta(days=1))
        late = status.document(store, config, NOW + timedelta(days=6))
    assert fresh["outgoing"][0]["overdue"] is False
    assert fresh["warnings"] == []
    assert late["outgoing"][0]["overdue"] is True
    assert "no SDI outcome 5 days" in late["warnings"][0]


def test_accepted_without_consegna_after_24_hours_is_flagged_with_what_to_do(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "main")
    accepted = NOW + timedelta(minutes=1)
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        store.transition(outgoing_id, Event.ACCETTAZIONE, at=accepted, source="t")
        store.transition(outgoing_id, Event.PREAVVISO, at=NOW + timedelta(hours=12), source="t")
        fresh = status.document(store, config, accepted + timedelta(hours=23))
        late = status.document(store, config, accepted + timedelta(hours=25))
        text = status.render_text(late)
    assert fresh["outgoing"][0]["overdue"] is False
    assert fresh["warnings"] == []
    assert late["outgoing"][0]["state"] == "accepted"
    assert late["outgoing"][0]["overdue"] is True
    expected = (
        "IT01234567890_00001.xml: accepted by the PEC provider on 2024-05-06 10:01 UTC but not "
        "delivered to SDI after 24 hours: check the provider's webmail for errors, then send the "
        "file again under a new name"
    )
    assert late["warnings"] == [expected]
    assert "WARNING: IT01234567890_00001.xml: accepted by the PEC provider" in text


def test_sent_without_any_receipt_after_24_hours_is_flagged_too(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        _sent(store, "main", "IT01234567890_00001.xml")
        late = status.document(store, config, NOW + timedelta(hours=25))
    assert late["outgoing"][0]["overdue"] is True
    assert "with no acceptance receipt since" in late["warnings"][0]
    assert "not delivered to SDI after 24 hours" in late["warnings"][0]


@pytest.mark.parametrize(
    "event", [Event.CONSEGNA, Event.ERRORE_CONSEGNA, Event.RILEVAZIONE_VIRUS, Event.RC]
)
def test_consegna_or_an_error_clears_the_24_hour_flag(tmp_path: Path, event: Event) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        store.transition(outgoing_id, Event.ACCETTAZIONE, at=NOW, source="t")
        store.transition(outgoing_id, event, at=NOW + timedelta(hours=2), source="t")
        doc = status.document(store, config, NOW + timedelta(hours=30))
    assert doc["outgoing"][0]["overdue"] is False
    assert doc["warnings"] == []


def test_a_resend_restarts_the_24_hour_clock(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        store.transition(outgoing_id, Event.ACCETTAZIONE, at=NOW, source="t")
        store.transition(outgoing_id, Event.ERRORE_CONSEGNA, at=NOW, source="t")
        again = NOW + timedelta(hours=40)
        store.transition(outgoing_id, Event.SENDING, at=again, source="t")
        store.transition(outgoing_id, Event.SENT, at=again, source="t")
        store.transition(outgoing_id, Event.ACCETTAZIONE, at=again, source="t")
        doc = status.document(store, config, again + timedelta(hours=2))
    assert doc["outgoing"][0]["state"] == "accepted"
    assert doc["outgoing"][0]["overdue"] is False


def test_render_text_summarises_states_and_warnings(tmp_path: Path) -> None:
    config = _config(tmp_path, "alpha", "beta")
    with Store(config.store_path) as store:
        _sent(store, "alpha", "IT01234567890_00001.xml")
        text = status.render_text(status.document(store, config, NOW))
    assert "[alpha]" in text
    assert "outgoing: 1 (1 sent)" in text
    assert "SDI address: sdi01@pec.fatturapa.it" in text


def test_render_text_explains_each_state_and_shows_quarantine_reasons() -> None:
    doc = {
        "sdi_address": "sdi07@pec.fatturapa.it",
        "outgoing": [
            {
                "file": "IT01234567890_00009.xml",
                "state": "sdi-rejected",
                "identificativo_sdi": "123",
                "updated": "2026-12-01T10:00:00+00:00",
                "meaning": "not issued: fix it and send it again",
                "events": [{"event": "NS", "detail": "error 00404: Fattura duplicata"}],
            }
        ],
        "incoming": [{"file": "IT09876543210_abc12.xml.p7m", "received": "2026-12-01"}],
        "quarantined": [{"what": "imap uid 7", "reason": "plain e-mail", "path": "/q/7.eml"}],
        "warnings": [],
    }
    text = status.render_text(doc)
    assert "IT01234567890_00009.xml: sdi-rejected, IdentificativoSdI 123" in text
    assert "not issued: fix it and send it again" in text
    assert "NS: error 00404: Fattura duplicata" in text
    assert "IT09876543210_abc12.xml.p7m (received 2026-12-01)" in text
    assert "imap uid 7: plain e-mail" in text
    assert "kept at /q/7.eml" in text


def test_render_text_shows_times_in_local_time_and_json_keeps_utc() -> None:
    doc: dict[str, Any] = {
        "sdi_address": "sdi01@pec.fatturapa.it",
        "outgoing": [
            {"file": "IT01234567890_00001.xml", "state": "sent", "updated": NOW.isoformat()}
        ],
        "incoming": [{"file": "IT09876543210_abc12.xml", "received": NOW.isoformat()}],
        "quarantined": [],
    }
    rome_summer = timezone(timedelta(hours=2), "CEST")
    text = status.render_text(doc, tz=rome_summer)
    assert "(updated 2024-05-06 12:00:00 CEST)" in text
    assert "(received 2024-05-06 12:00:00 CEST)" in text
    assert doc["outgoing"][0]["updated"] == "2024-05-06T10:00:00+00:00"


def test_render_text_counts_and_lists_notifications_about_files_we_never_sent(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "alpha")
    with Store(config.store_path) as store:
        for number in (1, 2):
            store.record_notification(
                "alpha",
                kind="NS",
                file_name=f"IT99999999999_0000{number}.xml",
                identificativo_sdi=f"77{number}",
                message_id=None,
                outgoing_id=None,
                received=NOW,
                source="imap uid 9",
                detail="00404",
            )
        text = status.render_text(status.document(store, config, NOW), tz=UTC)
    assert "about files we never sent: 2" in text
    assert "NS about IT99999999999_00002.xml, IdentificativoSdI 772" in text
    assert "(received 2024-05-06 10:00:00 UTC)" in text


def _entry(name: str, *events: str) -> dict[str, object]:
    return {"file": name, "created": "t0", "events": [{"event": event} for event in events]}


def test_pass_summary_counts_what_the_pass_sent_rejected_filed_and_quarantined() -> None:
    before = {
        "outgoing": [_entry("A.xml", "claimed", "sending", "sent")],
        "incoming": [],
        "quarantined": [],
        "orphans": [],
    }
    after = {
        "outgoing": [
            _entry(
                "A.xml", "claimed", "sending", "sent", "accettazione", "avvenuta-consegna", "RC"
            ),
            _entry("B.xml", "claimed", "sending", "sent"),
            _entry("C.xml", "claimed", "rejected"),
        ],
        "incoming": [{"file": "IT09876543210_abc12.xml"}],
        "quarantined": [{"what": "imap uid 3"}],
        "orphans": [],
    }
    assert status.pass_summary(before, after) == (
        "outbox: 1 sent, 1 rejected; mailbox: 3 receipts and notifications filed, "
        "1 supplier invoice(s) received, 1 quarantined"
    )


def test_pass_summary_has_one_line_per_account_when_there_are_several() -> None:
    empty: dict[str, list[object]] = {"outgoing": [], "incoming": [], "quarantined": []}
    after = {"accounts": {"alpha": empty, "beta": {**empty, "outgoing": [_entry("B", "sent")]}}}
    lines = status.pass_summary({"accounts": {"alpha": empty}}, after).splitlines()
    tail = "; mailbox: 0 receipts and notifications filed, 0 quarantined"
    assert lines == [
        f"alpha: outbox: 0 sent, 0 rejected{tail}",
        f"beta: outbox: 1 sent, 0 rejected{tail}",
    ]


def test_render_text_shows_the_warnings_of_a_received_invoice() -> None:
    doc = {
        "sdi_address": "sdi07@pec.fatturapa.it",
        "outgoing": [],
        "incoming": [
            {
                "file": "IT09876543210_abc13.xml",
                "received": "2026-12-01T10:00:00+00:00",
                "warnings": ["its content equals the invoice received on 2026-11-30"],
            }
        ],
        "quarantined": [],
        "warnings": [],
    }
    text = status.render_text(doc)
    assert "IT09876543210_abc13.xml (received" in text
    assert "note: its content equals the invoice received on 2026-11-30" in text


def test_render_text_says_what_happens_next_to_an_interrupted_send() -> None:
    doc = {
        "sdi_address": "sdi01@pec.fatturapa.it",
        "outgoing": [
            {
                "file": "IT01234567890_00010.xml",
                "state": "sending",
                "updated": "2026-12-01T10:00:00+00:00",
                "next_action": "sending was interrupted: resent at 2026-12-02T10:00:00+00:00",
            }
        ],
        "incoming": [],
        "quarantined": [],
        "warnings": [],
    }
    assert "next: sending was interrupted: resent at" in status.render_text(doc)


def test_an_ns_for_a_duplicate_invoice_says_to_check_the_earlier_one_not_to_fix_and_resend(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        detail = "IdentificativoSdI 9; error 00404: Fattura duplicata"
        store.transition(outgoing_id, Event.NS, at=NOW, source="t", detail=detail)
        doc = status.document(store, config, NOW)
    meaning = doc["outgoing"][0]["meaning"]
    assert "already has an invoice of this seller with this number" in meaning
    assert "check that invoice before sending anything" in meaning
    assert "only if it is really a new invoice" in meaning
    assert "fix it" not in meaning


def test_an_ns_for_other_errors_keeps_the_general_meaning(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        detail = "IdentificativoSdI 9; error 00200: file non conforme al formato"
        store.transition(outgoing_id, Event.NS, at=NOW, source="t", detail=detail)
        doc = status.document(store, config, NOW)
    assert "fix it and send it again" in doc["outgoing"][0]["meaning"]


def test_a_file_refused_as_already_sent_is_not_told_to_be_fixed(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    name = "IT01234567890_00001.xml"
    with Store(config.store_path) as store:
        record = store.record_outgoing("main", file_name=name, sha256="ab", at=NOW)
        detail = f"[duplicate] {name}: these very bytes were already sent on 2024-05-01"
        store.transition(record.id, Event.REJECTED, at=NOW, source="checks", detail=detail)
        doc = status.document(store, config, NOW)
    [item] = doc["outgoing"]
    assert item["state"] == "rejected"
    assert "Nothing to do if it is the same invoice" in item["meaning"]
    assert "failed our own checks" not in item["meaning"]
    assert "fix the file" not in item["meaning"]
    assert f"rejected: {detail}" in status.render_text(doc)


def test_a_receipt_without_error_reads_no_error_instead_of_nessuno(tmp_path: Path) -> None:
    config = _config(tmp_path, "main")
    with Store(config.store_path) as store:
        outgoing_id = _sent(store, "main", "IT01234567890_00001.xml")
        store.transition(outgoing_id, Event.ACCETTAZIONE, at=NOW, source="t", detail="nessuno")
        store.record_notification(
            "main",
            kind="avvenuta-consegna",
            file_name=None,
            received=NOW,
            source="imap uid 3",
            outgoing_id=None,
            detail="nessuno",
        )
        doc = status.document(store, config, NOW)
    [event] = [e for e in doc["outgoing"][0]["events"] if e["event"] == "accettazione"]
    assert event["detail"] == "no error"
    assert doc["orphans"][0]["detail"] == "no error"
