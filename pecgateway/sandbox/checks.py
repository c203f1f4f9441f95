"""The sandbox SDI's file checks: which NS error code, if any, a received file earns.

Checks in order, first failure wins (one NS per file): 00001 invalid name; 00002 name already used
(same stem, any case or extension); 00003 over 5 MB; 00106 empty file; 00102 a ``.p7m`` that is not
a readable CAdES envelope; 00200 not well formed, not an invoice or not schema-valid; 00427
CodiceDestinatario length wrong for the format; 00404 same seller, year, number and type as an
accepted invoice. Reads and records names in the memory it is given; decides no outcome (simulator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pecgateway import filename, invoice, p7m, safexml, validate
from pecgateway.errors import MalformedMessage
from pecgateway.sandbox import notification as nt

if TYPE_CHECKING:
    from pecgateway.schema import SchemaSet

__all__ = ["Verdict", "check", "errore", "invoice_keys"]

_ERRORS = {
    "00001": ("Nome file non valido", "Usare <IdPaese><IdCodice>_<progressivo>.xml[.p7m]"),
    "00002": ("Nome file duplicato", "Usare un progressivo mai usato prima"),
    "00003": ("Le dimensioni del file superano quelle ammesse (5 MB)", "Ridurre il file"),
    "00106": ("File vuoto o corrotto", "Inviare di nuovo il file"),
    "00102": ("File non integro (firma non valida)", "Firmare di nuovo il file (CAdES-BES)"),
    "00200": ("File non conforme al formato", "Correggere il file e inviarlo con un nuovo nome"),
    "00427": ("CodiceDestinatario di lunghezza non coerente con FormatoTrasmissione", ""),
    "00404": ("Fattura duplicata", "La fattura risulta gia' trasmessa e non scartata"),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The first failed check (None: the file passed) and the invoice read on the way, if any."""

    problem: nt.Errore | None
    facts: invoice.Invoice | None


@dataclass(slots=True)
class _Subject:
    """One file under check, with the memory and limits the checks use."""

    name: str
    data: bytes
    stem: str
    used_names: set[str]
    accepted: set[tuple[str, ...]]
    schemas: SchemaSet | None
    max_file_bytes: int
    facts: invoice.Invoice | None = None


def errore(codice: str, detail: str | None = None) -> nt.Errore:
    """The ListaErrori entry for ``codice`` (SDI's wording), with ``detail`` after the description."""
    descrizione, suggerimento = _ERRORS[codice]
    return nt.Errore(codice, f"{descrizione}: {detail}" if detail else descrizione, suggerimento)


def invoice_keys(facts: invoice.Invoice) -> set[tuple[str, ...]]:
    """(seller, year, number, type) of each document: what 00404 compares."""
    seller = facts.seller.vat or facts.seller.codice_fiscale or ""
    return {
        (seller, (doc.data or "")[:4], doc.numero or "", doc.tipo_documento or "")
        for doc in facts.documents
    }


def check(
    name: str,
    data: bytes,
    *,
    stem: str,
    used_names: set[str],
    accepted: set[tuple[str, ...]],
    schemas: SchemaSet | None,
    max_file_bytes: int,
) -> Verdict:
    """Run the checks in order; a name that passes 00001 is added to ``used_names``."""
    subject = _Subject(name, data, stem, used_names, accepted, schemas, max_file_bytes)
    for step in _CHECKS:
        problem = step(subject)
        if problem is not None:
            return Verdict(problem, subject.facts)
    return Verdict(None, subject.facts)


def _check_name(file: _Subject) -> nt.Errore | None:
    if filename.parse_invoice_name(file.name, strict=True) is None:
        return errore("00001", file.name)
    key = filename.invoice_stem(file.name).lower()
    if key in file.used_names:
        return errore("00002", file.name)
    file.used_names.add(key)
    return None


def _check_size(file: _Subject) -> nt.Errore | None:
    if len(file.data) > file.max_file_bytes:
        return errore("00003", f"{len(file.data)} byte")
    return errore("00106") if not file.data.strip() else None


def _check_content(file: _Subject) -> nt.Errore | None:
    payload = file.data
    if file.name.lower().endswith((".p7m", ".pk7")):
        try:
            unwrapped = p7m.unwrap(file.data)
        except MalformedMessage as exc:
            return errore("00102", exc.reason)
        if not unwrapped.signed:
            return errore("00102", "il file .p7m non contiene una busta CAdES")
        payload = unwrapped.payload
    try:
        safexml.parse(payload)  # SDI is strict: no recovery, whatever invoice.parse tolerates
        file.facts = invoice.parse(payload)
    except MalformedMessage as exc:
        return errore("00200", exc.reason)
    return _check_schema(file, payload)


def _check_schema(file: _Subject, payload: bytes) -> nt.Errore | None:
    if file.schemas is None:
        return None
    problems = validate.check(payload, file.stem + ".xml", file.schemas)
    if not problems:
        return None
    first = problems[0]
    where = f" (riga {first.line})" if first.line else ""
    codice = "00001" if first.code.startswith("file-name") else "00200"
    return errore(codice, f"{first.message}{where}")


def _check_codice(file: _Subject) -> nt.Errore | None:
    facts = file.facts
    assert facts is not None
    codice = facts.codice_destinatario or ""
    wanted = 6 if facts.format == "FPA12" else 7
    if facts.format in ("FPA12", "FPR12") and len(codice) != wanted:
        return errore("00427", f"{codice!r} per {facts.format}: attesi {wanted} caratteri")
    return None


def _check_duplicate(file: _Subject) -> nt.Errore | None:
    assert file.facts is not None
    clash = invoice_keys(file.facts) & file.accepted
    if clash:
        seller, anno, numero, tipo = min(clash)
        return errore("00404", f"{tipo} numero {numero} del {anno} di {seller}")
    return None


_CHECKS: tuple[Callable[[_Subject], nt.Errore | None], ...] = (
    _check_name,
    _check_size,
    _check_content,
    _check_codice,
    _check_duplicate,
)
