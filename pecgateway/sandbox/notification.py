"""The sandbox's SDI notifications: the XML files SDI attaches to its messages, and their signature.

Builds RC, NS, MC, NE, DT, AT (and its zip) and MT in the namespace and root element of each flow
(PA: MessaggiTypes 1.1, B2B: MessaggiFatturaTypes 1.0), shaped like the real ones (prefixed root,
unqualified children). Their XAdES-BES signer and verifier live in ``xades`` and are re-exported
here. Decides nothing: see simulator.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from lxml import etree

from pecgateway.sandbox.xades import XadesSigner, signature_problem, verify

__all__ = [
    "NS_B2B",
    "NS_PA",
    "Errore",
    "Header",
    "XadesSigner",
    "build_at",
    "build_at_zip",
    "build_dt",
    "build_mc",
    "build_mt",
    "build_ne",
    "build_ns",
    "build_rc",
    "format_datetime",
    "signature_problem",
    "verify",
]

NS_PA = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
NS_B2B = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_ROME = ZoneInfo("Europe/Rome")
_DESCRIZIONE_MAX = {"PA": 255, "B2B": 1000}

# A child is (name, text) or (name, children) or (name, None) to leave it out.
_Value = str | list[tuple[str, "_Value | None"]]
_Fields = list[tuple[str, _Value | None]]


@dataclass(frozen=True, slots=True)
class Header:
    """What every notification about one received file says: SDI's ids and the file's."""

    identificativo_sdi: str
    nome_file: str
    message_id: str
    pec_message_id: str | None
    data_ora_ricezione: datetime
    hash: str  # SHA-256 hex of the file as received
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Errore:
    """One entry of ListaErrori: the SDI code (00001 ...), its description and a hint (B2B only)."""

    codice: str
    descrizione: str
    suggerimento: str = ""


def format_datetime(value: datetime) -> str:
    """SDI's ``2018-11-13T16:47:26.000+01:00``: milliseconds, Rome offset (naive means UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(_ROME).isoformat(timespec="milliseconds")


def _children(parent: etree._Element, fields: _Fields) -> None:
    for name, value in fields:
        if value is None:
            continue
        child = etree.SubElement(parent, name)
        if isinstance(value, str):
            child.text = value
        else:
            _children(child, value)


def _document(flow: str, root_name: str, fields: _Fields) -> bytes:
    namespace = NS_PA if flow == "PA" else NS_B2B
    root = etree.Element(f"{{{namespace}}}{root_name}", nsmap={"ns3": namespace, "ns2": _DS})
    root.set("versione", "1.0")
    root.text = "\n    "
    _children(root, fields)
    for child in root:
        child.tail = "\n    "
    if len(root):
        root[-1].tail = "\n"
    return b'<?xml version="1.0" encoding="UTF-8"?>' + etree.tostring(root, encoding="UTF-8")


def _descrizione(flow: str, text: str) -> str:
    return text[: _DESCRIZIONE_MAX[flow]]


def _hash_if_b2b(flow: str, header: Header) -> str | None:
    return header.hash if flow == "B2B" else None


def _tail(header: Header) -> _Fields:
    return [
        ("MessageId", header.message_id),
        ("PecMessageId", header.pec_message_id),
        ("Note", header.note),
    ]


def build_rc(
    header: Header,
    *,
    flow: str,
    data_ora_consegna: datetime,
    codice_destinatario: str,
    descrizione_destinatario: str,
) -> bytes:
    """RicevutaConsegna (both flows), unsigned: sign it with ``XadesSigner.sign``."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("DataOraConsegna", format_datetime(data_ora_consegna)),
        (
            "Destinatario",
            [("Codice", codice_destinatario), ("Descrizione", descrizione_destinatario)],
        ),
    ]
    return _document(flow, "RicevutaConsegna", fields + _tail(header))


def _errore(flow: str, errore: Errore) -> _Value:
    entry: _Fields = [
        ("Codice", errore.codice),
        ("Descrizione", _descrizione(flow, errore.descrizione)),
    ]
    if flow == "B2B":
        entry.append(("Suggerimento", errore.suggerimento[:2000]))
    return entry


def build_ns(header: Header, *, flow: str, errori: Sequence[Errore]) -> bytes:
    """NotificaScarto (PA) / RicevutaScarto (B2B) with 1-200 errors, unsigned."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("ListaErrori", [("Errore", _errore(flow, errore)) for errore in errori[:200]]),
    ]
    root = "NotificaScarto" if flow == "PA" else "RicevutaScarto"
    return _document(flow, root, fields + _tail(header))


def build_mc(
    header: Header,
    *,
    flow: str,
    descrizione: str,
    data_messa_a_disposizione: date | None = None,
) -> bytes:
    """NotificaMancataConsegna (PA) / RicevutaImpossibilitaRecapito (B2B, with the date), unsigned."""
    b2b = flow == "B2B"
    available = (data_messa_a_disposizione or header.data_ora_ricezione.date()).isoformat()
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("DataMessaADisposizione", available if b2b else None),
        ("Descrizione", _descrizione(flow, descrizione)),
    ]
    root = "RicevutaImpossibilitaRecapito" if b2b else "NotificaMancataConsegna"
    return _document(flow, root, fields + _tail(header))


def _riferimento_fattura(numero: str | None, anno: str | None) -> _Value | None:
    if not numero or not anno:
        return None
    return [("NumeroFattura", numero[:20]), ("AnnoFattura", anno)]


def build_ne(
    header: Header,
    *,
    esito: str,
    descrizione: str | None = None,
    numero_fattura: str | None = None,
    anno_fattura: str | None = None,
    message_id_committente: str | None = None,
) -> bytes:
    """NotificaEsito (PA only) wrapping the buyer's EsitoCommittente (EC01 / EC02), unsigned."""
    esito_committente: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("RiferimentoFattura", _riferimento_fattura(numero_fattura, anno_fattura)),
        ("Esito", esito),
        ("Descrizione", _descrizione("PA", descrizione) if descrizione else None),
        ("MessageIdCommittente", message_id_committente),
    ]
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("EsitoCommittente", esito_committente),
    ]
    xml = _document("PA", "NotificaEsito", fields + _tail(header))
    return xml.replace(b"<EsitoCommittente>", b'<EsitoCommittente versione="1.0">', 1)


def build_dt(
    header: Header,
    *,
    descrizione: str | None = None,
    numero_fattura: str | None = None,
    anno_fattura: str | None = None,
) -> bytes:
    """NotificaDecorrenzaTermini (PA only): the buyer did not answer in time, unsigned."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("RiferimentoFattura", _riferimento_fattura(numero_fattura, anno_fattura)),
        ("NomeFile", header.nome_file),
        ("Descrizione", _descrizione("PA", descrizione) if descrizione else None),
    ]
    return _document("PA", "NotificaDecorrenzaTermini", fields + _tail(header))


def build_at(header: Header, *, codice_destinatario: str, descrizione_destinatario: str) -> bytes:
    """AttestazioneTrasmissioneFattura (PA only), unsigned; HashFileOriginale is the header's hash."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        (
            "Destinatario",
            [("Codice", codice_destinatario), ("Descrizione", descrizione_destinatario)],
        ),
        *_tail(header),
        ("HashFileOriginale", header.hash),
    ]
    return _document("PA", "AttestazioneTrasmissioneFattura", fields)


def build_at_zip(*, at_name: str, at_xml: bytes, invoice_name: str, invoice: bytes) -> bytes:
    """The ``_AT_nnn.zip`` SDI sends: the original invoice file and the signed attestation."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(invoice_name, invoice)
        archive.writestr(at_name, at_xml)
    return buffer.getvalue()


def build_mt(
    *,
    flow: str,
    identificativo_sdi: str,
    nome_file: str,
    hash: str,
    codice_destinatario: str,
    formato: str,
    message_id: str,
    tentativi_invio: int = 1,
    note: str | None = None,
) -> bytes:
    """MetadatiInvioFile (PA) / FileMetadati (B2B, with Hash): never signed, as in the schemas."""
    fields: _Fields = [
        ("IdentificativoSdI", identificativo_sdi),
        ("NomeFile", nome_file),
        ("Hash", hash if flow == "B2B" else None),
        ("CodiceDestinatario", codice_destinatario),
        ("Formato", formato[:5]),
        ("TentativiInvio", str(tentativi_invio)),
        ("MessageId", message_id),
        ("Note", note),
    ]
    return _document(flow, "MetadatiInvioFile" if flow == "PA" else "FileMetadati", fields)
