"""Synthetic, schema-valid FatturaPA invoices made by pecgateway itself (FPR12, FPA12, FSM10).

Used by the tests, the sandbox and the demo; every builder returns UTF-8 bytes without BOM that the
official XSDs accept. Pure: values in, bytes out. The data is invented (no real company or person).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from lxml import etree

from pecgateway.invoice import Party

__all__ = [
    "BUYER_B2B",
    "BUYER_PA",
    "SELLER",
    "Allegato",
    "Body",
    "Fields",
    "Line",
    "Party",
    "file_name",
    "fpa12",
    "fpr12",
    "fsm10",
    "schema_invalid",
]

NS_ORDINARIA = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.2"
NS_SEMPLIFICATA = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fatture/v1.0"
_CENT = Decimal("0.01")

SELLER = Party(vat="IT01234567890", codice_fiscale=None, name="ALFA SERVIZI SRL")
BUYER_B2B = Party(vat="IT09876543210", codice_fiscale=None, name="BETA COMMERCIO SPA")
BUYER_PA = Party(vat=None, codice_fiscale="80012345678", name="COMUNE DI ESEMPIO")


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line: ``prezzo_unitario`` and ``aliquota_iva`` as decimal strings."""

    descrizione: str
    prezzo_unitario: str
    quantita: str = "1.00"
    aliquota_iva: str = "22.00"

    @property
    def prezzo_totale(self) -> Decimal:
        return (Decimal(self.quantita) * Decimal(self.prezzo_unitario)).quantize(_CENT)


@dataclass(frozen=True, slots=True)
class Allegato:
    """An attachment embedded in the invoice (``Allegati``)."""

    nome: str
    data: bytes
    formato: str = "PDF"


@dataclass(frozen=True, slots=True)
class Body:
    """One FatturaElettronicaBody: one invoice of a lot."""

    numero: str
    data: str
    lines: tuple[Line, ...] = (Line("Consulenza informatica", "100.00"),)
    tipo_documento: str = "TD01"
    allegati: tuple[Allegato, ...] = ()


def file_name(
    transmitter: str = "IT01234567890", progressivo: str = "00001", ext: str = "xml"
) -> str:
    """The SDI file name for an invoice: ``IT01234567890_00001.xml``."""
    return f"{transmitter}_{progressivo}.{ext}"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def _id_fiscale(parent: etree._Element, tag: str, vat: str) -> None:
    element = _sub(parent, tag)
    _sub(element, "IdPaese", vat[:2])
    _sub(element, "IdCodice", vat[2:])


def _sede(parent: etree._Element) -> None:
    sede = _sub(parent, "Sede")
    for tag, text in (("Indirizzo", "VIA ROMA 1"), ("CAP", "00100"), ("Comune", "ROMA")):
        _sub(sede, tag, text)
    _sub(sede, "Provincia", "RM")
    _sub(sede, "Nazione", "IT")


def _dati_anagrafici(parent: etree._Element, party: Party, *, seller: bool) -> None:
    dati = _sub(parent, "DatiAnagrafici")
    if party.vat:
        _id_fiscale(dati, "IdFiscaleIVA", party.vat)
    if party.codice_fiscale:
        _sub(dati, "CodiceFiscale", party.codice_fiscale)
    _sub(_sub(dati, "Anagrafica"), "Denominazione", party.name or "SENZA NOME")
    if seller:
        _sub(dati, "RegimeFiscale", "RF01")


def _riepilogo(parent: etree._Element, lines: Sequence[Line]) -> Decimal:
    rates: dict[str, Decimal] = {}
    for line in lines:
        rates[line.aliquota_iva] = rates.get(line.aliquota_iva, Decimal(0)) + line.prezzo_totale
    total = Decimal(0)
    for rate, imponibile in rates.items():
        imposta = (imponibile * Decimal(rate) / 100).quantize(_CENT)
        riepilogo = _sub(parent, "DatiRiepilogo")
        _sub(riepilogo, "AliquotaIVA", rate)
        if Decimal(rate) == 0:
            _sub(riepilogo, "Natura", "N2.2")
        _sub(riepilogo, "ImponibileImporto", str(imponibile))
        _sub(riepilogo, "Imposta", str(imposta))
        total += imponibile + imposta
    return total


def _linee(parent: etree._Element, lines: Sequence[Line]) -> None:
    for number, line in enumerate(lines, start=1):
        detail = _sub(parent, "DettaglioLinee")
        _sub(detail, "NumeroLinea", str(number))
        _sub(detail, "Descrizione", line.descrizione)
        _sub(detail, "Quantita", str(Decimal(line.quantita).quantize(_CENT)))
        _sub(detail, "PrezzoUnitario", str(Decimal(line.prezzo_unitario).quantize(_CENT)))
        _sub(detail, "PrezzoTotale", str(line.prezzo_totale))
        _sub(detail, "AliquotaIVA", line.aliquota_iva)
        if Decimal(line.aliquota_iva) == 0:
            _sub(detail, "Natura", "N2.2")


def _allegati(body: etree._Element, allegati: Sequence[Allegato]) -> None:
    for allegato in allegati:
        element = _sub(body, "Allegati")
        _sub(element, "NomeAttachment", allegato.nome)
        _sub(element, "FormatoAttachment", allegato.formato)
        _sub(element, "Attachment", base64.b64encode(allegato.data).decode("ascii"))


def _body(root: etree._Element, spec: Body) -> tuple[etree._Element, etree._Element]:
    """A new FatturaElettronicaBody and its DatiGeneraliDocumento (type, currency, date, number)."""
    body = _sub(root, "FatturaElettronicaBody")
    documento = _sub(_sub(body, "DatiGenerali"), "DatiGeneraliDocumento")
    for tag, text in (("TipoDocumento", spec.tipo_documento), ("Divisa", "EUR")):
        _sub(documento, tag, text)
    _sub(documento, "Data", spec.data)
    _sub(documento, "Numero", spec.numero)
    return body, documento


def _body_ordinaria(root: etree._Element, spec: Body) -> None:
    body, documento = _body(root, spec)
    totale = _sub(documento, "ImportoTotaleDocumento")
    beni = _sub(body, "DatiBeniServizi")
    _linee(beni, spec.lines)
    totale.text = str(_riepilogo(beni, spec.lines))
    _allegati(body, spec.allegati)


def _serialize(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _bodies(numero: str, data: str, importo: str | None, lot: Sequence[Body] | None) -> list[Body]:
    if lot:
        return list(lot)
    if importo is None:
        return [Body(numero=numero, data=data)]
    return [Body(numero=numero, data=data, lines=(Line("Consulenza informatica", importo),))]


@dataclass(frozen=True, slots=True)
class _Header:
    formato: str
    transmitter: str
    progressivo_invio: str
    codice_destinatario: str
    pec_destinatario: str | None
    seller: Party
    buyer: Party


def _transmission(parent: etree._Element, head: _Header) -> None:
    dati = _sub(parent, "DatiTrasmissione")
    _id_fiscale(dati, "IdTrasmittente", head.transmitter)
    _sub(dati, "ProgressivoInvio", head.progressivo_invio)
    _sub(dati, "FormatoTrasmissione", head.formato)
    _sub(dati, "CodiceDestinatario", head.codice_destinatario)
    if head.pec_destinatario is not None:
        _sub(dati, "PECDestinatario", head.pec_destinatario)


def _root(namespace: str, tag: str, head: _Header) -> tuple[etree._Element, etree._Element]:
    root = etree.Element(f"{{{namespace}}}{tag}", nsmap={"p": namespace})
    root.set("versione", head.formato)
    header = _sub(root, "FatturaElettronicaHeader")
    _transmission(header, head)
    return root, header


def _ordinaria(head: _Header, bodies: Sequence[Body]) -> bytes:
    root, header = _root(NS_ORDINARIA, "FatturaElettronica", head)
    seller = _sub(header, "CedentePrestatore")
    _dati_anagrafici(seller, head.seller, seller=True)
    _sede(seller)
    buyer = _sub(header, "CessionarioCommittente")
    _dati_anagrafici(buyer, head.buyer, seller=False)
    _sede(buyer)
    for spec in bodies:
        _body_ordinaria(root, spec)
    return _serialize(root)


class Fields(TypedDict, total=False):
    """What every builder takes besides ``codice_destinatario`` and ``buyer``; defaults (`_DEFAULTS`):
    transmitter IT01234567890, progressivo_invio 00001, no pec_destinatario, seller SELLER, numero 1,
    data 2024-01-15, no importo. ``lot`` gives several bodies (numero, data, importo then unused).
    """

    transmitter: str
    progressivo_invio: str
    pec_destinatario: str | None
    seller: Party
    numero: str
    data: str
    importo: str | None
    lot: Sequence[Body] | None


_DEFAULTS = Fields(
    transmitter="IT01234567890",
    progressivo_invio="00001",
    pec_destinatario=None,
    seller=SELLER,
    numero="1",
    data="2024-01-15",
    importo=None,
    lot=None,
)


def _resolve(
    formato: str, codice_destinatario: str, buyer: Party, fields: Fields
) -> tuple[_Header, list[Body]]:
    """The header and bodies of one invoice; a keyword no builder takes is a TypeError."""
    unknown = sorted(set(fields) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"{formato.lower()}() got unexpected keyword arguments: {unknown}")
    given = Fields(**{**_DEFAULTS, **fields})
    head = _Header(
        formato,
        given["transmitter"],
        given["progressivo_invio"],
        codice_destinatario,
        given["pec_destinatario"],
        given["seller"],
        buyer,
    )
    return head, _bodies(given["numero"], given["data"], given["importo"], given["lot"])


def fpr12(
    *, codice_destinatario: str = "ABC1234", buyer: Party = BUYER_B2B, **fields: Unpack[Fields]
) -> bytes:
    """A B2B invoice (FPR12, 7-character CodiceDestinatario); ``lot`` gives several bodies."""
    return _ordinaria(*_resolve("FPR12", codice_destinatario, buyer, fields))


def fpa12(
    *, codice_destinatario: str = "UFPQ1O", buyer: Party = BUYER_PA, **fields: Unpack[Fields]
) -> bytes:
    """A PA invoice (FPA12, 6-character codice ufficio); ``lot`` gives several bodies."""
    return _ordinaria(*_resolve("FPA12", codice_destinatario, buyer, fields))


def _party_semplificata(parent: etree._Element, party: Party) -> None:
    if party.vat:
        _id_fiscale(parent, "IdFiscaleIVA", party.vat)
    if party.codice_fiscale:
        _sub(parent, "CodiceFiscale", party.codice_fiscale)
    _sub(parent, "Denominazione", party.name or "SENZA NOME")
    _sede(parent)


def _body_semplificata(root: etree._Element, spec: Body) -> None:
    body, _documento = _body(root, spec)
    for line in spec.lines:
        beni = _sub(body, "DatiBeniServizi")
        _sub(beni, "Descrizione", line.descrizione)
        _sub(beni, "Importo", str(line.prezzo_totale))
        _sub(_sub(beni, "DatiIVA"), "Aliquota", line.aliquota_iva)
    _allegati(body, spec.allegati)


def fsm10(
    *, codice_destinatario: str = "0000000", buyer: Party = BUYER_B2B, **fields: Unpack[Fields]
) -> bytes:
    """A simplified invoice (FSM10, TipoDocumento TD07); ``Importo`` is VAT included per line."""
    head, given = _resolve("FSM10", codice_destinatario, buyer, fields)
    bodies = [
        Body(
            b.numero,
            b.data,
            b.lines,
            "TD07" if b.tipo_documento == "TD01" else b.tipo_documento,
            b.allegati,
        )
        for b in given
    ]
    root, header = _root(NS_SEMPLIFICATA, "FatturaElettronicaSemplificata", head)
    seller_element = _sub(header, "CedentePrestatore")
    _party_semplificata(seller_element, head.seller)
    _sub(seller_element, "RegimeFiscale", "RF01")
    _buyer_semplificata(_sub(header, "CessionarioCommittente"), buyer)
    for spec in bodies:
        _body_semplificata(root, spec)
    return _serialize(root)


def _buyer_semplificata(parent: etree._Element, party: Party) -> None:
    fiscali = _sub(parent, "IdentificativiFiscali")
    if party.vat:
        _id_fiscale(fiscali, "IdFiscaleIVA", party.vat)
    if party.codice_fiscale:
        _sub(fiscali, "CodiceFiscale", party.codice_fiscale)
    altri = _sub(parent, "AltriDatiIdentificativi")
    _sub(altri, "Denominazione", party.name or "SENZA NOME")
    _sede(altri)


def schema_invalid(**kwargs: Any) -> bytes:
    """An FPR12 that fails our checks and SDI's (empty ``Numero``: XSD error, NS 00200).

    For "one that SDI rejects although it passes our checks", send ``fpr12(numero=N)`` twice
    under two progressivi: the second is a duplicate invoice (NS 00404).
    """
    data = fpr12(**kwargs)
    numero = kwargs.get("numero", "1")
    return data.replace(f"<Numero>{numero}</Numero>".encode(), b"<Numero></Numero>", 1)
