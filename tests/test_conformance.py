"""Conformance: `pecgateway inspect --json` against every relevant row of the public corpus MANIFEST.

Each row's ``expected_facts`` (``key=value`` items separated by ``;``) was computed independently of
pecgateway; these tests check that inspect reports the same kind, identifiers, numbers and contents.
"""

from __future__ import annotations

import csv
import datetime
import json
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from pecgateway import cli
from tests.conftest import CORPUS
from tests.test_report import assert_contract_shape

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(
        not (CORPUS / "MANIFEST.tsv").is_file(), reason=f"the public corpus is absent ({CORPUS})"
    ),
]

CHECKED_KINDS = re.compile(r"^(invoice-|notif-|p7m-|pec-|other-non-pec$|other-zip$)")
_KEY = r"[A-Za-z][\w.\-/]*"
_FACT = re.compile(rf"(?:^|(?<=\s))({_KEY})=('[^']*'|.*?)(?=\s+{_KEY}=|$)")
_LISTED = re.compile(r"^(?:postacert attachments|ZIP entries):\s*(.*)$")
_SERVICE_PARTS = {"daticert.xml", "postacert.eml", "smime.p7s"}
_NOTIFICATION_NAME = re.compile(r"_(RC|NS|MC|NE|DT|AT|EC|SE|MT)_\w{1,3}\.xml$", re.IGNORECASE)
_INVOICE_NAME = re.compile(r"^[A-Z]{2}\w{2,28}_\w{1,5}\.xml(\.p7m)?$", re.IGNORECASE)
_SDI_ADDRESS = re.compile(r"sdi\d+@pec\.fatturapa\.it", re.IGNORECASE)
_PEC_TYPE_OF_KIND = {
    "pec-accettazione": "accettazione",
    "pec-consegna": "avvenuta-consegna",
    "pec-errore-consegna": "errore-consegna",
    "pec-envelope": "posta-certificata",
    "pec-envelope-sdi": "posta-certificata",
}


@dataclass(frozen=True)
class Row:
    local_path: str
    kind: str
    facts_text: str
    notes: str

    @property
    def path(self) -> Path:
        return CORPUS / self.local_path

    @property
    def facts(self) -> dict[str, str]:
        return parse_facts(self.facts_text)

    @property
    def chunks(self) -> list[str]:
        return [chunk.strip() for chunk in self.facts_text.split(";")]


def parse_facts(text: str) -> dict[str, str]:
    """``a=1; b=x y c=2; d='quoted value'`` -> {a: 1, b: x y, c: 2, d: quoted value}; first wins."""
    facts: dict[str, str] = {}
    for chunk in text.split(";"):
        for key, value in _FACT.findall(chunk.strip()):
            facts.setdefault(key, value.strip().strip("'").strip())
    return facts


def _rows() -> list[Row]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [
            Row(r["local_path"], r["kind"], r["expected_facts"], r["notes"])
            for r in reader
            if CHECKED_KINDS.match(r["kind"])
        ]


ROWS = _rows()


def inspect_json(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    """Run ``pecgateway inspect --json PATH`` in-process; stdout must be exactly one JSON object."""
    code = cli.main(["inspect", "--json", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "Traceback" not in out
    obj = json.loads(out)
    assert isinstance(obj, dict)
    assert obj["path"] == str(path)
    assert_contract_shape(obj)
    assert code == (1 if obj["kind"] in ("malformed", "unknown") else 0), (code, obj.get("error"))
    if code == 1:
        assert str(path) in err, "the failure message on stderr must name the file"
    return code, obj


def _block(obj: dict[str, object], name: str) -> dict[str, object]:
    block = obj.get(name)
    assert isinstance(block, dict), f"{name} block missing: {obj.get('kind')} {obj.get('error')}"
    return block


def _values(facts: dict[str, str], key: str) -> list[str] | None:
    return [v.strip() for v in facts[key].split("|")] if key in facts else None


# ---- invoices ------------------------------------------------------------------------------------


def check_invoice(block: dict[str, object], facts: dict[str, str]) -> None:
    """The invoice facts of a MANIFEST row (plain invoice or the INNER content of a p7m)."""
    expected_format = facts.get("versione") or facts.get("FormatoTrasmissione")
    assert block["format"] == expected_format
    for key, field in (
        ("IdTrasmittente", "transmitter"),
        ("ProgressivoInvio", "progressivo_invio"),
        ("CodiceDestinatario", "codice_destinatario"),
    ):
        if key in facts and "None" not in facts[key]:  # "ITNone": the element is missing
            assert block[field] == facts[key], field
    documents = block["documents"]
    assert isinstance(documents, list)
    if "bodies" in facts:
        assert len(documents) == int(facts["bodies"])
    for key, field in (
        ("Numero", "numero"),
        ("TipoDocumento", "tipo_documento"),
        ("ImportoTotaleDocumento", "importo_totale"),
    ):
        expected = _values(facts, key)
        if expected is not None:
            assert [(d[field] or "").strip() for d in documents] == expected, field
    dates = _values(facts, "Data")
    if dates is not None:
        actual = [(d["data"] or "").strip() for d in documents]
        assert len(actual) == len(dates)
        for got, want in zip(actual, dates, strict=True):
            assert got in (want, want[:10]), (got, want)


def _check_invoice_row(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = inspect_json(row.path, capsys)
    if row.kind == "invoice-malformed":
        assert obj["kind"] == "malformed"
        assert code == 1
        return
    assert obj["kind"] == "invoice", obj.get("error")
    assert code == 0
    block = _block(obj, "invoice")
    assert block["format"] == row.kind.removeprefix("invoice-")
    assert block["signed"] is False
    check_invoice(block, row.facts)


# ---- p7m -------------------------------------------------------------------------------------------


def _inner_facts(row: Row) -> dict[str, str]:
    inner = row.facts_text.split("INNER:", 1)[1] if "INNER:" in row.facts_text else ""
    return parse_facts(inner)


def _check_p7m_row(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    _, obj = inspect_json(row.path, capsys)
    if row.kind == "p7m-invalid":  # not an envelope at all (the sample is a space and a newline)
        assert obj["kind"] == "malformed"
        return
    if row.kind == "p7m-der-nonxml":  # a signed text file: understood as signed, not an invoice
        assert obj["kind"] == "unknown"
        assert "not an invoice" in str(obj["error"])
        return
    if row.kind == "p7m-der-invalid":
        # Only the last BER end-of-contents byte is broken: a tolerant reader may recover the
        # invoice (listing the repair), or refuse the file; it must never pass silently.
        assert obj["kind"] in ("malformed", "invoice")
        if obj["kind"] == "invoice":
            assert obj["warnings"], "a recovered envelope must list the repair"
        return
    assert obj["kind"] == "invoice", obj.get("error")
    block = _block(obj, "invoice")
    assert block["signed"] is True
    _check_signers(block, row.facts)
    check_invoice(block, _inner_facts(row))


def _check_signers(block: dict[str, object], facts: dict[str, str]) -> None:
    signers = block["signers"]
    assert isinstance(signers, list)
    assert len(signers) == int(facts["signers"])
    subject = str(signers[0]["subject"]).upper()
    assert facts["cert"].split(" valid ")[0].upper() in subject
    got = signers[0]["signing_time"]
    assert isinstance(got, str)
    assert datetime.datetime.fromisoformat(got) == datetime.datetime.fromisoformat(
        facts["signing_time"]
    )


# ---- notifications ---------------------------------------------------------------------------------


def _check_notification_row(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = inspect_json(row.path, capsys)
    assert obj["kind"] == "sdi-notification", obj.get("error")
    assert code == 0
    block = _block(obj, "notification")
    facts = row.facts
    assert block["type"] == facts["type"] == row.kind.removeprefix("notif-")
    assert block["root"] == facts["root"]
    expected_flow = "B2B" if "ivaservizi" in facts["ns"] else "PA"
    assert block["flow"] == expected_flow
    for key, field in (
        ("IdentificativoSdI", "identificativo_sdi"),
        ("NomeFile", "nome_file"),
        ("MessageId", "message_id"),
        ("DataOraRicezione", "data_ora_ricezione"),
        ("CodiceDestinatario", "codice_destinatario"),
    ):
        if key in facts:
            assert block[field] == facts[key], field
    esito = facts.get("Esito") or facts.get("EsitoCommittente.Esito")
    if esito:
        assert block["esito"] == esito
    if "ListaErrori" in facts:
        errors = block["errors"]
        assert isinstance(errors, list)
        assert [e["codice"] for e in errors] == facts["ListaErrori"].split("|")
    if any(chunk.startswith("UNSIGNED") for chunk in row.chunks):
        assert block["signed"] is False
    if "XAdES-signed" in row.chunks:
        assert block["signed"] is True


# ---- PEC and mail ------------------------------------------------------------------------------------


def _listed_names(row: Row) -> list[str] | None:
    for chunk in row.chunks:
        match = _LISTED.match(chunk)
        if match:
            return [item.split("(")[0].strip() for item in match.group(1).split(", ") if item]
    return None


def _expected_contents(row: Row) -> list[str]:
    listed = _listed_names(row)
    if listed is not None:
        return listed
    parts = row.facts.get("parts", "")
    names = [str(make_header(decode_header(p.split("[")[0].strip()))) for p in parts.split(", ")]
    return [name for name in names if name and name.lower() not in _SERVICE_PARTS]


def _expected_kind(name: str) -> str:
    if _NOTIFICATION_NAME.search(name):
        return "sdi-notification"
    if _INVOICE_NAME.match(name):
        return "invoice"
    return "unknown"


def _check_contents(obj: dict[str, object], row: Row) -> None:
    contents = obj["contents"]
    assert isinstance(contents, list)
    names = _expected_contents(row)
    assert [c["filename"] for c in contents] == names
    assert [c["kind"] for c in contents] == [_expected_kind(name) for name in names]


def _riferimento(path: Path) -> str | None:
    with path.open("rb") as handle:
        headers = BytesHeaderParser().parse(handle)
    value = headers.get("X-Riferimento-Message-ID")
    return re.sub(r"\s+", "", str(value)).lower() if value else None


def _check_pec_row(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = inspect_json(row.path, capsys)
    assert obj["kind"] == "pec", obj.get("error")
    assert code == 0
    block = _block(obj, "pec")
    facts = row.facts
    assert block["type"] == _PEC_TYPE_OF_KIND[row.kind] == facts["tipo"]
    for key, field in (
        ("errore", "errore"),
        ("errore-esteso", "errore_esteso"),
        ("gestore", "gestore"),
        ("identificativo", "identificativo"),
    ):
        if key in facts:
            assert block[field] == facts[key], field
    riferimento = block["riferimento_message_id"]
    assert isinstance(riferimento, str)
    assert riferimento.lower() == _riferimento(row.path)
    sdi = _SDI_ADDRESS.search(facts.get("From", ""))
    assert block["sdi_address"] == (sdi.group().lower() if sdi else None)
    oggetto = block["oggetto"]
    assert isinstance(oggetto, str)
    assert oggetto in facts["Subject"]
    _check_contents(obj, row)


def _check_other_row(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = inspect_json(row.path, capsys)
    assert code == 0
    expected = {"other-non-pec": "email", "other-zip": "archive"}[row.kind]
    assert obj["kind"] == expected, obj.get("error")
    assert not {"invoice", "notification", "pec"} & obj.keys()
    _check_contents(obj, row)


_CHECKS = {
    "invoice": _check_invoice_row,
    "p7m": _check_p7m_row,
    "notif": _check_notification_row,
    "pec": _check_pec_row,
    "other": _check_other_row,
}


@pytest.mark.parametrize("row", ROWS, ids=[row.local_path for row in ROWS])
def test_inspect_json_matches_the_manifest(row: Row, capsys: pytest.CaptureFixture[str]) -> None:
    _CHECKS[row.kind.split("-")[0]](row, capsys)


def test_the_manifest_parser_reads_compound_facts() -> None:
    facts = parse_facts(
        "IdTrasmittente=IT01 ProgressivoInvio=00001 CodiceDestinatario=ABC; Data=2019-02-15 ; "
        "daticert: tipo=errore-consegna errore-esteso='5.1.1 - non valido' gestore='A B'"
    )
    assert facts == {
        "IdTrasmittente": "IT01",
        "ProgressivoInvio": "00001",
        "CodiceDestinatario": "ABC",
        "Data": "2019-02-15",
        "tipo": "errore-consegna",
        "errore-esteso": "5.1.1 - non valido",
        "gestore": "A B",
    }


# ---- the real console script -------------------------------------------------------------------------

_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, runpy, sys, traceback
    for path in sys.argv[1:]:
        out, err = io.StringIO(), io.StringIO()
        sys.argv = ["pecgateway", "inspect", "--json", path]
        code = None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_module("pecgateway", run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                traceback.print_exc()
        print(json.dumps({"path": path, "code": code, "out": out.getvalue(),
                          "err": err.getvalue()}), file=sys.__stdout__)
    """
)


def _corpus_files() -> list[Path]:
    return sorted(p for p in CORPUS.rglob("*") if p.is_file())


def test_console_script_on_every_corpus_file_prints_json_and_never_a_traceback() -> None:
    """``python -m pecgateway`` (module entry point, one interpreter for all files)."""
    files = _corpus_files()
    run = subprocess.run(
        [sys.executable, "-c", _DRIVER, *map(str, files)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    results = [json.loads(line) for line in run.stdout.decode().splitlines()]
    assert [r["path"] for r in results] == [str(f) for f in files]
    for result in results:
        assert "Traceback" not in result["err"], result["path"]
        obj = json.loads(result["out"])
        assert obj["path"] == result["path"]
        assert result["code"] in (0, 1)
        assert result["code"] == (1 if obj["kind"] in ("malformed", "unknown") else 0)


@pytest.mark.parametrize(
    "local_path",
    [
        "p7m/net_IT02182030391_31.xml.p7m",
        "pec/oca_POSTA_CERTIFICATA_Invio_File_7339338.eml",
        "p7m/oca_IT05979361218_fake.xml.p7m",
    ],
)
def test_python_dash_m_pecgateway_inspect_as_a_real_process(local_path: str) -> None:
    path = CORPUS / local_path
    run = subprocess.run(
        [sys.executable, "-m", "pecgateway", "inspect", "--json", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"Traceback" not in run.stderr
    obj = json.loads(run.stdout)
    assert run.returncode == (1 if obj["kind"] in ("malformed", "unknown") else 0)
