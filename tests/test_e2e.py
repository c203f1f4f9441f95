"""End to end: the service (in-process `run_once`, and `pecgateway once`) against a running sandbox.

Issue 4's end-to-end tests and its done-when: a `pecgateway sandbox --delays fast` subprocess (real
Dovecot, the PEC provider on aiosmtpd, the SDI simulator) per module; invoices made with
`pecgateway.sample` are dropped into the sandbox's outbox and the service runs until the store
shows the expected state. The real PEC messages of the corpus get a sandbox of their own: SDI's
envelopes in it come from sdi03, which the service rightly learns, and the simulator would then
ignore every invoice sent there.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import itertools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pecgateway import cli, config, pec, sample, sdi
from pecgateway.sample import Party
from tests.conftest import CORPUS
from tests.factory import e2e
from tests.factory.pecmail import Part, build_plain_mail
from tests.factory.signing import der_envelope

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA

pytestmark = pytest.mark.servers

SDI01 = "sdi01@pec.fatturapa.it"
SDI_NN = re.compile(r"^sdi(0[2-9]|[1-9]\d)@pec\.fatturapa\.it$")
SUPPLIER = Party(vat="IT09876543210", codice_fiscale=None, name="BETA FORNITURE SRL")
US = Party(vat="IT01234567890", codice_fiscale=None, name="ALFA SERVIZI SRL")
_numbers = itertools.count(1)


def _unique() -> int:
    """A number never used in this module: progressivi and invoice numbers stay unique for SDI."""
    return next(_numbers)


def _b2b(**kwargs: Any) -> tuple[str, bytes]:
    n = _unique()
    progressivo = f"E{n:04d}"
    data = sample.fpr12(progressivo_invio=progressivo, numero=f"E2E-{n}", **kwargs)
    return sample.file_name(progressivo=progressivo), data


def _pa(codice_ufficio: str) -> tuple[str, bytes]:
    n = _unique()
    progressivo = f"P{n:04d}"
    data = sample.fpa12(
        progressivo_invio=progressivo, numero=f"PA-{n}", codice_destinatario=codice_ufficio
    )
    return sample.file_name(progressivo=progressivo), data


def _drop(cfg: config.Config, name: str, data: bytes) -> None:
    """Into the outbox the way legacy software should: a temporary name, then a rename."""
    outbox = cfg.accounts[0].outbox
    temporary = outbox / f"{name}.tmp"
    temporary.write_bytes(data)
    temporary.rename(outbox / name)


def _drive(cfg: config.Config, done: Any, logs: list[dict[str, Any]] | None = None) -> Any:
    return asyncio.run(e2e.run_until(cfg, done, logs=logs))


def _events(entry: dict[str, Any]) -> list[str]:
    return [event["event"] for event in entry["events"]]


def _no_unit_failed(logs: list[dict[str, Any]]) -> None:
    failed = [line for line in logs if line["event"] == "unit_failed"]
    assert failed == [], failed


# ---- the sandboxes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A world-traversable temporary directory (Dovecot's helpers must enter it) for the module."""
    directory = Path(tempfile.mkdtemp(prefix="pecgateway-e2e-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _running(directory: Path, schema_dir: Path, ca: SandboxCA) -> Iterator[e2e.Sandbox]:
    running = e2e.start_sandbox(directory, schema_dir, ca.directory)
    try:
        yield running
    finally:
        left = running.stop()
    assert running.process.returncode == 0
    assert left == [], f"processes left behind by the sandbox (Dovecot?): {left}"


@pytest.fixture(scope="module")
def sandbox(public_dir: Path, schema_dir: Path, sandbox_ca: SandboxCA) -> Iterator[e2e.Sandbox]:
    with _running(public_dir / "flows", schema_dir, sandbox_ca) as running:
        yield running


@pytest.fixture(scope="module")
def first_delivery(sandbox: e2e.Sandbox) -> tuple[str, list[dict[str, Any]]]:
    """The module's first invoice, sent before any other so that SDI's address gets learned."""
    cfg = sandbox.config()
    name, data = _b2b()
    _drop(cfg, name, data)
    logs: list[dict[str, Any]] = []
    _drive(cfg, e2e.state_of(name, "sdi-delivered"), logs)
    return name, logs


@pytest.fixture
def gateway(sandbox: e2e.Sandbox, first_delivery: object) -> config.Config:
    """The sandbox's own configuration, with SDI's address already learned."""
    return sandbox.config()


# ---- outbound ---------------------------------------------------------------------------------


def _contract_shape(document: dict[str, Any]) -> None:
    """contracts.md section 2: the keys every consumer relies on."""
    assert {"sdi_address", "outgoing", "incoming", "quarantined"} <= set(document)
    for entry in document["outgoing"]:
        assert {"file", "state", "message_id", "identificativo_sdi", "updated", "events"} <= set(
            entry
        )
        datetime.fromisoformat(entry["updated"])
        for event in entry["events"]:
            assert {"at", "event", "detail"} <= set(event)
            datetime.fromisoformat(event["at"])
    for item in document["incoming"]:
        assert {"file", "identificativo_sdi", "received", "paths"} <= set(item)
    for item in document["quarantined"]:
        assert {"what", "reason", "path"} <= set(item)


def _status_json(cfg: config.Config, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert cli.main(["status", "--config", str(cfg.source), "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_valid_b2b_invoice_reaches_sdi_delivered_with_its_audit_trail_and_learns_sdis_address(
    sandbox: e2e.Sandbox,
    first_delivery: tuple[str, list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, logs = first_delivery
    cfg = sandbox.config()
    document = _status_json(cfg, capsys)
    _contract_shape(document)
    entry = e2e.outgoing(document, name)
    assert entry is not None
    assert entry["state"] == "sdi-delivered"
    assert entry["identificativo_sdi"]
    events = _events(entry)
    for expected in ("sent", "accettazione", "avvenuta-consegna", "RC"):
        assert expected in events
    assert events.index("sent") < events.index("accettazione") < events.index("RC")
    assert f"to {SDI01}" in entry["events"][events.index("sending")]["detail"]
    assigned = sandbox.events("sdi_assigned_address")[0]["address"]
    assert SDI_NN.match(document["sdi_address"])
    assert document["sdi_address"] == assigned
    rc = [p for p in entry["paths"] if re.search(r"_RC_\d{3}\.xml$", p)]
    assert len(rc) == 1, entry["paths"]
    rc_path = Path(rc[0])
    assert rc_path.is_relative_to(cfg.accounts[0].inbox / "notifiche-sdi")
    notification = sdi.parse(rc_path.read_bytes(), rc_path.name)
    assert notification.nome_file == name
    assert notification.identificativo_sdi == entry["identificativo_sdi"]
    _no_unit_failed(logs)


def test_the_next_invoice_goes_to_the_learned_sdi_address_by_itself(
    gateway: config.Config, sandbox: e2e.Sandbox
) -> None:
    learned = e2e.status_document(gateway)["sdi_address"]
    assert SDI_NN.match(learned)
    name, data = _b2b()
    _drop(gateway, name, data)
    document = _drive(gateway, e2e.state_of(name, "sdi-delivered"))
    entry = e2e.outgoing(document, name)
    assert entry is not None
    sending = [e for e in entry["events"] if e["event"] == "sending"]
    assert [e["detail"] for e in sending] == [f"sending to {learned}"]
    received = [r for r in sandbox.events("sdi_received") if name in r["files"]]
    assert [r["recipient"] for r in received] == [learned]
    consegna = _receipt(entry, "avvenuta-consegna")
    assert consegna.daticert is not None
    assert consegna.daticert.destinatari == (learned,)


def _receipt(entry: dict[str, Any], kind: str) -> pec.PecMessage:
    (path,) = [p for p in entry["paths"] if p.endswith(f"_{kind}.eml")]
    return pec.parse(Path(path).read_bytes())


def test_b2b_invoice_to_0000000_without_pec_is_sdi_not_delivered(gateway: config.Config) -> None:
    name, data = _b2b(codice_destinatario="0000000")
    _drop(gateway, name, data)
    document = _drive(gateway, e2e.state_of(name, "sdi-not-delivered"))
    entry = e2e.outgoing(document, name)
    assert entry is not None
    assert "MC" in _events(entry)
    assert "RC" not in _events(entry)


def test_an_invoice_sdi_finds_duplicate_is_sdi_rejected_with_the_error_list(
    gateway: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    n = _unique()
    first = sample.file_name(progressivo=f"D{n:04d}")
    second = sample.file_name(progressivo=f"D{n:04d}"[:-1] + "Z")
    _drop(gateway, first, sample.fpr12(progressivo_invio=f"D{n:04d}", numero=f"DUP-{n}"))
    _drive(gateway, e2e.state_of(first, "sdi-delivered"))
    again = sample.fpr12(progressivo_invio=f"D{n:04d}"[:-1] + "Z", numero=f"DUP-{n}")
    _drop(gateway, second, again)  # passes our checks: other name, other bytes
    _drive(gateway, e2e.state_of(second, "sdi-rejected", "rejected"))
    entry = e2e.outgoing(_status_json(gateway, capsys), second)
    assert entry is not None
    assert entry["state"] == "sdi-rejected"
    (ns,) = [e for e in entry["events"] if e["event"] == "NS"]
    assert "error 00404: Fattura duplicata" in ns["detail"]
    (path,) = [p for p in entry["paths"] if re.search(r"_NS_\d{3}\.xml$", p)]
    notification = sdi.parse(Path(path).read_bytes(), Path(path).name)
    assert [(e.codice, e.descrizione is not None) for e in notification.errors] == [("00404", True)]


def test_a_file_failing_our_checks_is_rejected_with_line_and_column_and_never_sent(
    gateway: config.Config, sandbox: e2e.Sandbox
) -> None:
    n = _unique()
    name = sample.file_name(progressivo=f"R{n:04d}")
    _drop(gateway, name, sample.schema_invalid(progressivo_invio=f"R{n:04d}", numero=f"R-{n}"))
    document = _drive(gateway, e2e.state_of(name, "rejected"))
    entry = e2e.outgoing(document, name)
    assert entry is not None
    assert _events(entry) == ["claimed", "rejected"]
    assert entry["message_id"] is None
    rejected = gateway.accounts[0].outbox / "rejected"
    assert (rejected / name).read_bytes().startswith(b"<?xml")
    text = (rejected / f"{name}.reason.txt").read_text(encoding="utf-8")
    reason = json.loads((rejected / f"{name}.reason.json").read_text(encoding="utf-8"))
    assert name in text
    problems = reason["problems"]
    assert problems
    assert all(p["line"] and p["column"] for p in problems), problems
    assert all(f"(line {p['line']}, column {p['column']})" in text for p in problems), text
    assert all(p["hint"] for p in problems)
    assert [r for r in sandbox.events("provider_accepted") if name in str(r["subject"])] == []
    assert [r for r in sandbox.events("sdi_received") if name in r["files"]] == []
    _, raws = sandbox.mailbox()
    assert all(name.encode() not in raw for raw in raws.values())


def test_pa_invoice_the_office_accepts_is_pa_accepted(gateway: config.Config) -> None:
    name, data = _pa("UFPQ1O")
    _drop(gateway, name, data)
    document = _drive(gateway, e2e.state_of(name, "pa-accepted", "pa-refused"))
    entry = e2e.outgoing(document, name)
    assert entry is not None
    assert entry["state"] == "pa-accepted"
    assert _events(entry)[-2:] == ["RC", "NE-EC01"]


def test_pa_invoice_the_office_refuses_is_pa_refused(gateway: config.Config) -> None:
    name, data = _pa("UFPQ1R")  # the simulator's office ending in R refuses (EC02)
    _drop(gateway, name, data)
    document = _drive(gateway, e2e.state_of(name, "pa-accepted", "pa-refused"))
    entry = e2e.outgoing(document, name)
    assert entry is not None
    assert entry["state"] == "pa-refused"
    assert "NE-EC02" in _events(entry)


# ---- inbound ----------------------------------------------------------------------------------


def test_a_suppliers_signed_invoice_is_filed_with_its_metadata_and_facts(
    gateway: config.Config,
    sandbox: e2e.Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    n = _unique()
    progressivo = f"S{n:04d}"
    xml = sample.fpr12(
        transmitter="IT09876543210",
        progressivo_invio=progressivo,
        codice_destinatario="ABC1234",
        seller=SUPPLIER,
        buyer=US,
        numero=f"F-{n}",
    )
    signed = der_envelope(xml)
    name = f"IT09876543210_{progressivo}.xml.p7m"
    (tmp_path / name).write_bytes(signed)
    argv = ["sandbox", "deliver", "--dir", str(sandbox.directory), str(tmp_path / name)]
    assert cli.main(argv) == 0

    def filed(document: dict[str, Any]) -> bool:
        return any(item["file"] == name for item in document["incoming"])

    _drive(gateway, filed)
    (item,) = [i for i in _status_json(gateway, capsys)["incoming"] if i["file"] == name]
    assert item["identificativo_sdi"]
    paths = [Path(p) for p in item["paths"]]
    inbox = gateway.accounts[0].inbox / "fatture-ricevute"
    assert all(p.is_relative_to(inbox) and p.is_file() for p in paths)
    by_name = {p.name: p for p in paths}
    assert by_name[name].read_bytes() == signed
    assert by_name[f"IT09876543210_{progressivo}.xml"].read_bytes() == xml
    (mt,) = [p for p in paths if re.search(r"_MT_\d{3}\.xml$", p.name)]
    metadata = sdi.parse(mt.read_bytes(), mt.name)
    assert metadata.identificativo_sdi == item["identificativo_sdi"]
    facts = json.loads(by_name[f"{name}.json"].read_text(encoding="utf-8"))
    assert facts["kind"] == "invoice"
    assert facts["invoice"]["signed"] is True
    assert facts["invoice"]["seller"]["vat"] == "IT09876543210"
    assert facts["mt_hash_check"] == "ok"


def test_a_plain_foreign_mail_is_quarantined_and_a_valid_invoice_still_reaches_sdi(
    gateway: config.Config, sandbox: e2e.Sandbox, tmp_path: Path
) -> None:
    n = _unique()
    raw = build_plain_mail(
        subject=f"Offerta {n}",
        message_id=f"<offer.{n}@example.com>",
        attachments=[Part("listino.pdf", b"%PDF-1.4 listino", "application/pdf")],
    )
    (tmp_path / "offer.eml").write_bytes(raw)
    assert (
        cli.main(
            ["sandbox", "inject", "--dir", str(sandbox.directory), str(tmp_path / "offer.eml")]
        )
        == 0
    )
    name, data = _b2b()
    _drop(gateway, name, data)

    def both(document: dict[str, Any]) -> bool:
        quarantined = any(Path(q["path"]).read_bytes() == raw for q in document["quarantined"])
        return quarantined and e2e.state_of(name, "sdi-delivered")(document)

    logs: list[dict[str, Any]] = []
    document = _drive(gateway, both, logs)
    (item,) = [q for q in document["quarantined"] if Path(q["path"]).read_bytes() == raw]
    assert "plain e-mail" in item["reason"]
    path = Path(item["path"])
    assert path.is_relative_to(gateway.accounts[0].inbox / "quarantena")
    assert Path(f"{path}.reason.txt").read_text(encoding="utf-8").strip() == item["reason"]
    _no_unit_failed(logs)


# ---- the real PEC messages of the corpus ---------------------------------------------------------

_EXPECTED = {  # MANIFEST kind -> how the service must file it: (as, kind)
    "pec-accettazione": {("orphan", "accettazione")},
    "pec-consegna": {("orphan", "avvenuta-consegna")},
    "pec-errore-consegna": {("orphan", "errore-consegna")},
    "pec-envelope-sdi": {("orphan", "RC"), ("incoming", "invoice")},
    "pec-envelope": {("quarantine", "quarantine")},
    "other-non-pec": {("quarantine", "quarantine")},
    # receipts trimmed for a parser's test suite (smime.p7s cut to 4 bytes or removed): no longer
    # PEC-shaped, so they are not believed (inbound_trust.py) and a person reads them
    "pec-not-signed": {("quarantine", "quarantine")},
}
_NOT_SIGNED = "S/MIME (openssl smime -verify -noverify): FAIL"


def _corpus_messages() -> dict[str, tuple[str, bytes]]:
    """name -> (MANIFEST kind, raw bytes) of every message in corpus/pec."""
    kinds: dict[str, str] = {}
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            signed = _NOT_SIGNED not in row["expected_facts"]
            kinds[row["local_path"]] = row["kind"] if signed else "pec-not-signed"
    return {
        path.name: (kinds.get(f"pec/{path.name}", ""), path.read_bytes())
        for path in sorted((CORPUS / "pec").glob("*.eml"))
    }


@pytest.fixture(scope="module")
def corpus_sandbox(
    public_dir: Path, schema_dir: Path, sandbox_ca: SandboxCA
) -> Iterator[tuple[e2e.Sandbox, int, dict[int, tuple[str, str]]]]:
    """A sandbox whose mailbox holds every real PEC message of the corpus, injected unchanged.

    Yields (sandbox, UIDVALIDITY, {uid: (corpus file name, MANIFEST kind)}).
    """
    if not (CORPUS / "pec").is_dir():
        pytest.skip(f"the corpus of real PEC messages is absent ({CORPUS / 'pec'})")
    messages = _corpus_messages()
    with _running(public_dir / "corpus", schema_dir, sandbox_ca) as running:
        for name in messages:
            argv = [
                "sandbox",
                "inject",
                "--dir",
                str(running.directory),
                str(CORPUS / "pec" / name),
            ]
            assert cli.main(argv) == 0, name
        uidvalidity, raws = running.wait_for_mail(len(messages))
        uids = {uid: _which(raw, messages) for uid, raw in raws.items()}
        yield running, uidvalidity, uids


def _which(raw: bytes, messages: dict[str, tuple[str, bytes]]) -> tuple[str, str]:
    for name, (kind, data) in messages.items():
        if data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n"):
            return name, kind
    raise AssertionError(f"a message in the mailbox that was not injected: {raw[:200]!r}")


def _filing_problems(
    document: dict[str, Any], uidvalidity: int, uids: dict[int, tuple[str, str]], inbox: Path
) -> list[str]:
    """What is wrong with how the corpus messages were filed ([] when all is well)."""
    filed = e2e.filed_by_uid(document, uidvalidity)
    problems = []
    for uid, (name, kind) in sorted(uids.items()):
        items = filed.get(uid, [])
        if not items:
            problems.append(f"{name}: filed nowhere")
        for item in items:
            paths = [Path(p) for p in item["paths"]]
            if not paths or not all(p.is_file() and p.is_relative_to(inbox) for p in paths):
                problems.append(f"{name}: {item['as']} paths missing or outside the inbox: {paths}")
            if item["as"] == "quarantine" and not (
                item["reason"] and Path(f"{paths[0]}.reason.txt").is_file()
            ):
                problems.append(f"{name}: quarantined without a reason file")
        got = {(i["as"], i["kind"]) for i in items}
        if kind in _EXPECTED and not (got and got <= _EXPECTED[kind]):
            problems.append(f"{name} ({kind}): filed as {sorted(got)}, expected {_EXPECTED[kind]}")
    return problems


@pytest.mark.conformance
def test_every_real_pec_message_of_the_corpus_is_classified_and_filed(
    corpus_sandbox: tuple[e2e.Sandbox, int, dict[int, tuple[str, str]]],
) -> None:
    running, uidvalidity, uids = corpus_sandbox
    cfg = running.config()
    logs: list[dict[str, Any]] = []

    def all_handled(document: dict[str, Any]) -> bool:
        done = [line for line in logs if line["event"] == "unit_done" and "uid" in line]
        return len(done) >= len(uids)

    document = _drive(cfg, all_handled, logs)
    assert _filing_problems(document, uidvalidity, uids, cfg.accounts[0].inbox) == []
    _no_unit_failed(logs)


@pytest.mark.conformance
def test_once_as_a_command_files_every_real_pec_message_of_the_corpus(
    corpus_sandbox: tuple[e2e.Sandbox, int, dict[int, tuple[str, str]]],
) -> None:
    """Issue 4's done-when, as a user runs it (its own store and folders, same mailbox)."""
    running, uidvalidity, uids = corpus_sandbox
    base = running.directory
    text = running.config_file.read_text(encoding="utf-8")
    for old in ("pecgateway.sqlite3", "outbox", "inbox"):
        text = text.replace(json.dumps(str(base / old)), json.dumps(str(base / "once" / old)))
    (base / "once").mkdir()
    config_file = base / "once" / "pecgateway.toml"
    config_file.write_text(text, encoding="utf-8")
    result = subprocess.run(
        e2e.pecgateway("once", "--config", str(config_file)),
        capture_output=True,
        text=True,
        timeout=e2e.WAIT_S * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line for line in lines if line.get("level") in ("error", "critical")] == []
    units = [line for line in lines if line["event"] == "unit_done" and "uid" in line]
    assert len(units) == len(uids), units
    cfg = config.load(config_file)
    assert cfg.accounts[0].inbox == base / "once" / "inbox"
    document = e2e.status_document(cfg)
    assert _filing_problems(document, uidvalidity, uids, cfg.accounts[0].inbox) == []


# ---- status for a person ----------------------------------------------------------------------


def test_status_prints_each_file_and_its_state_readably(
    gateway: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    document = e2e.status_document(gateway)
    capsys.readouterr()
    assert cli.main(["status", "--config", str(gateway.source)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"SDI address: {document['sdi_address']}")
    lines = text.splitlines()
    for entry in document["outgoing"]:
        assert any(entry["file"] in line and entry["state"] in line for line in lines), entry
    for item in document["incoming"]:
        assert any(item["file"] in line for line in lines), item
    for entry in document["outgoing"]:
        if entry["state"] in ("rejected", "sdi-rejected", "pa-refused"):
            last = entry["events"][-1]
            assert f"{last['event']}: {last['detail']}" in text  # why, not only the state
    assert not text.lstrip().startswith("{")
