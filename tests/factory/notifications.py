"""Test builders of SDI notification XML: every type, both namespaces, with or without ds:Signature.

The element order follows MessaggiTypes v1.1 (PA) and MessaggiFatturaTypes v1.0 (B2B); children are
unqualified under a prefixed root, as SDI writes them. Knobs produce the field faults (no Hash, empty
Destinatario, odd namespace, BOM, unknown root) that the parser must tolerate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lxml import etree

from pecgateway.filename import NotificationType

__all__ = ["DSIG", "NS_B2B", "NS_PA", "ROOTS", "build_notification"]

NS_PA = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
NS_B2B = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"
DSIG = "http://www.w3.org/2000/09/xmldsig#"

_T = NotificationType
# (type, "PA" | "B2B") -> root element name
ROOTS: dict[tuple[NotificationType, str], str] = {
    (_T.RC, "PA"): "RicevutaConsegna",
    (_T.RC, "B2B"): "RicevutaConsegna",
    (_T.NS, "PA"): "NotificaScarto",
    (_T.NS, "B2B"): "RicevutaScarto",
    (_T.MC, "PA"): "NotificaMancataConsegna",
    (_T.MC, "B2B"): "RicevutaImpossibilitaRecapito",
    (_T.NE, "PA"): "NotificaEsito",
    (_T.DT, "PA"): "NotificaDecorrenzaTermini",
    (_T.AT, "PA"): "AttestazioneTrasmissioneFattura",
    (_T.EC, "PA"): "NotificaEsitoCommittente",
    (_T.SE, "PA"): "ScartoEsitoCommittente",
    (_T.MT, "PA"): "MetadatiInvioFile",
    (_T.MT, "B2B"): "FileMetadati",
}

_HASH = "2c1f3a240a056d9537a8608fed310812ef7b1b7a410d0152f5c9c9e93486ae44"
_Field = tuple[str, object]  # (name, text | list of sub-fields)


def _destinatario(codice: str) -> list[_Field]:
    return [("Codice", codice), ("Descrizione", "Amministrazione di prova")]


def _lista_errori(errors: Iterable[tuple[str, str, str | None]]) -> list[_Field]:
    found: list[_Field] = []
    for codice, descrizione, suggerimento in errors:
        errore: list[_Field] = [("Codice", codice), ("Descrizione", descrizione)]
        if suggerimento is not None:
            errore.append(("Suggerimento", suggerimento))
        found.append(("Errore", errore))
    return found


def _fields(kind: NotificationType, b2b: bool, v: Mapping[str, object]) -> list[_Field]:
    hash_: list[_Field] = [("Hash", v["hash"])] if b2b else []
    head: list[_Field] = [
        ("IdentificativoSdI", v["identificativo_sdi"]),
        ("NomeFile", v["nome_file"]),
    ]
    tail: list[_Field] = [("MessageId", v["message_id"]), ("Note", v["note"])]
    if v["pec_message_id"] is not None:
        tail.insert(1, ("PecMessageId", v["pec_message_id"]))
    ricezione: list[_Field] = [("DataOraRicezione", v["data_ora_ricezione"])]
    if kind is _T.RC:
        consegna: list[_Field] = [("DataOraConsegna", "2024-05-06T10:01:00.000+02:00")]
        destinatario = [("Destinatario", _destinatario(str(v["codice_destinatario"])))]
        return head + hash_ + ricezione + consegna + destinatario + tail
    if kind is _T.NS:
        errors = v["errors"]
        assert isinstance(errors, Iterable)
        return head + hash_ + ricezione + [("ListaErrori", _lista_errori(errors))] + tail
    if kind is _T.MC:
        disposizione: list[_Field] = [("DataMessaADisposizione", "2024-05-07")] if b2b else []
        descrizione: list[_Field] = [("Descrizione", v["descrizione"])]
        return head + hash_ + ricezione + disposizione + descrizione + tail
    return _pa_only_fields(kind, head, hash_, tail, v)


def _pa_only_fields(
    kind: NotificationType,
    head: list[_Field],
    hash_: list[_Field],
    tail: list[_Field],
    v: Mapping[str, object],
) -> list[_Field]:
    if kind is _T.NE:
        esito: list[_Field] = [
            ("IdentificativoSdI", v["identificativo_sdi"]),
            ("RiferimentoFattura", [("NumeroFattura", "1"), ("AnnoFattura", "2024")]),
            ("Esito", v["esito"]),
            ("Descrizione", v["descrizione"]),
            ("MessageIdCommittente", "987654"),
        ]
        return [*head, ("EsitoCommittente", esito), *tail]
    if kind is _T.DT:
        return [*head, ("Descrizione", v["descrizione"]), *tail]
    if kind is _T.AT:
        destinatario = ("Destinatario", _destinatario(str(v["codice_destinatario"])))
        ricezione = ("DataOraRicezione", v["data_ora_ricezione"])
        return [*head, ricezione, destinatario, *tail, ("HashFileOriginale", v["hash"])]
    if kind is _T.EC:
        return [
            ("IdentificativoSdI", v["identificativo_sdi"]),
            ("Esito", v["esito"]),
            ("Descrizione", v["descrizione"]),
            ("MessageIdCommittente", "987654"),
        ]
    if kind is _T.SE:
        return [("IdentificativoSdI", v["identificativo_sdi"]), ("Scarto", "EN00"), *tail]
    meta: list[_Field] = [
        ("CodiceDestinatario", v["codice_destinatario"]),
        ("Formato", "FPR12"),
        ("TentativiInvio", "1"),
    ]
    return head + hash_ + meta + tail


def _append(
    parent: etree._Element, fields: Iterable[_Field], drop: set[str], empty: set[str]
) -> None:
    for name, value in fields:
        if name in drop:
            continue
        child = etree.SubElement(parent, name)
        if name in empty:
            continue
        if isinstance(value, list):
            _append(child, value, drop, empty)
        elif value is not None:
            child.text = str(value)


def _signature(parent: etree._Element) -> None:
    """A structurally plausible ds:Signature whose ds:Object carries decoy field values."""
    ds = f"{{{DSIG}}}"
    signature = etree.SubElement(parent, ds + "Signature", Id="Signature1")
    signed_info = etree.SubElement(signature, ds + "SignedInfo")
    etree.SubElement(signed_info, ds + "CanonicalizationMethod").set(
        "Algorithm", "http://www.w3.org/2001/10/xml-exc-c14n#"
    )
    etree.SubElement(signature, ds + "SignatureValue").text = "AAAA"
    decoy = etree.SubElement(signature, ds + "Object")
    etree.SubElement(decoy, "IdentificativoSdI").text = "666"
    etree.SubElement(decoy, "NomeFile").text = "DECOY_99999.xml"
    etree.SubElement(decoy, "MessageId").text = "666"


def build_notification(
    kind: NotificationType,
    flow: str = "PA",
    *,
    signed: bool = False,
    signature_first: bool = False,
    root: str | None = None,
    namespace: str | None = None,
    drop: Iterable[str] = (),
    empty: Iterable[str] = (),
    bom: bool = False,
    **values: object,
) -> bytes:
    """Bytes of one notification; ``values`` override the defaults (identificativo_sdi, nome_file ...)."""
    defaults: dict[str, object] = {
        "identificativo_sdi": "111",
        "nome_file": "IT01234567890_11111.xml",
        "message_id": "123456",
        "pec_message_id": None,
        "data_ora_ricezione": "2024-05-06T10:00:00.000+02:00",
        "errors": [("00200", "File non conforme al formato", "Verificare il tracciato")],
        "esito": "EC01",
        "hash": _HASH,
        "codice_destinatario": "AAA111",
        "descrizione": "Notifica di prova",
        "note": "Nota di prova",
    }
    unknown = set(values) - set(defaults)
    if unknown:
        raise TypeError(f"unknown notification values: {sorted(unknown)}")
    defaults.update(values)
    b2b = flow == "B2B"
    name = root or ROOTS.get((kind, flow)) or ROOTS[(kind, "PA")]
    uri = namespace if namespace is not None else (NS_B2B if b2b else NS_PA)
    nsmap = {"ns3": uri, "ds": DSIG} if uri else {"ds": DSIG}
    element = etree.Element(f"{{{uri}}}{name}" if uri else name, nsmap=nsmap)
    element.set("versione", "1.0")
    if signed and signature_first:
        _signature(element)
    _append(element, _fields(kind, b2b, defaults), set(drop), set(empty))
    if signed and not signature_first:
        _signature(element)
    data = etree.tostring(element, xml_declaration=True, encoding="UTF-8")
    return (b"\xef\xbb\xbf" + data) if bom else data
