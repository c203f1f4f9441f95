"""SDI notifications (RC NS MC NE DT AT EC SE MT) in both namespaces, PA and B2B.

Owns reading a notification file: its type (root element first, file name second), its flow and
its fields, taken by local name and never from inside ds:Signature. Never schema-rejects; tolerates
BOMs and encodings. Pure: bytes in, values out; raises only MalformedMessage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lxml import etree

from pecgateway import safexml
from pecgateway.errors import MalformedMessage
from pecgateway.filename import NotificationType, parse_notification_name
from pecgateway.invoice import decode_text, is_invoice_root

__all__ = [
    "NS_B2B",
    "NS_PA",
    "Flow",
    "Notification",
    "SdiError",
    "parse",
    "root_type",
]

NS_PA = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
NS_B2B = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"


class Flow(enum.Enum):
    """Which schema family a notification belongs to: MessaggiTypes (PA) or MessaggiFatturaTypes."""

    PA = "PA"
    B2B = "B2B"


@dataclass(frozen=True, slots=True)
class SdiError:
    """One ``ListaErrori/Errore`` of a scarto."""

    codice: str
    descrizione: str | None
    suggerimento: str | None


@dataclass(frozen=True, slots=True)
class Notification:
    """The facts of one SDI notification; ``esito`` is EC01/EC02 (NE, EC) or the Scarto code (SE)."""

    type: NotificationType
    flow: Flow
    root: str
    identificativo_sdi: str | None
    nome_file: str | None
    message_id: str | None
    pec_message_id: str | None
    data_ora_ricezione: str | None
    errors: tuple[SdiError, ...]
    esito: str | None
    signed: bool
    hash: str | None
    codice_destinatario: str | None
    data_messa_a_disposizione: str | None
    descrizione: str | None
    note: str | None
    warnings: tuple[str, ...]


_T = NotificationType
_ROOTS: dict[str, NotificationType] = {
    "ricevutaconsegna": _T.RC,
    "notificascarto": _T.NS,
    "ricevutascarto": _T.NS,
    "notificamancataconsegna": _T.MC,
    "ricevutaimpossibilitarecapito": _T.MC,
    "ricevutaimpossibultarecapito": _T.MC,  # misspelling seen in the field
    "notificaesito": _T.NE,
    "notificadecorrenzatermini": _T.DT,
    "attestazionetrasmissionefattura": _T.AT,
    "notificaesitocommittente": _T.EC,
    "scartoesitocommittente": _T.SE,
    "metadatiinviofile": _T.MT,
    "filemetadati": _T.MT,
}
_B2B_ROOTS = frozenset(
    {
        "ricevutascarto",
        "ricevutaimpossibilitarecapito",
        "ricevutaimpossibultarecapito",
        "filemetadati",
    }
)
_DSIG = "xmldsig"


def root_type(local_name: str) -> NotificationType | None:
    """The notification type of a root element name (either family, any case), else None."""
    return _ROOTS.get(local_name.strip().lower())


# ---------------------------------------------------------------- reading the tree


def _decoded(data: bytes, warnings: list[str]) -> bytes:
    try:
        text, repairs = decode_text(data)
    except MalformedMessage as exc:
        raise MalformedMessage(f"not an SDI notification: {exc.reason}") from exc
    except (ValueError, LookupError) as exc:  # a decoder fault must not escape: parse as given
        warnings.append(f"encoding could not be checked ({exc}); parsed as given")
        return data.lstrip(b"\xef\xbb\xbf \t\r\n\x00")
    warnings.extend(repairs)
    return text


def _tree(data: bytes, warnings: list[str]) -> etree._Element:
    text = _decoded(data, warnings)
    try:
        return safexml.parse(text)
    except MalformedMessage as strict_error:
        try:
            root = safexml.parse_recovering(text)
        except MalformedMessage as exc:
            raise MalformedMessage(f"not an SDI notification: {exc.reason}") from exc
        warnings.append(f"not well-formed XML, read with recovery ({strict_error.reason})")
        return root


def _namespace(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str) or not tag.startswith("{"):
        return ""
    return tag[1:].split("}", 1)[0]


def _is_signature(element: etree._Element) -> bool:
    namespace = _namespace(element)
    return safexml.local_name(element) == "Signature" and _DSIG in namespace


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    for child in parent:
        is_named = isinstance(child.tag, str) and safexml.local_name(child) == name
        if is_named and not _is_signature(child):
            return child
    return None


def _text(parent: etree._Element | None, *path: str) -> str | None:
    element = parent
    for name in path:
        element = _child(element, name)
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _errors(root: etree._Element) -> tuple[SdiError, ...]:
    lista = _child(root, "ListaErrori")
    if lista is None:
        return ()
    found = []
    for errore in lista:
        if isinstance(errore.tag, str) and safexml.local_name(errore) == "Errore":
            found.append(
                SdiError(
                    codice=_text(errore, "Codice") or "",
                    descrizione=_text(errore, "Descrizione"),
                    suggerimento=_text(errore, "Suggerimento"),
                )
            )
    return tuple(found)


def _signed(root: etree._Element) -> bool:
    return any(isinstance(el.tag, str) and _is_signature(el) for el in root.iter())


# ---------------------------------------------------------------- type and flow


def _type(local: str, filename: str | None, warnings: list[str]) -> NotificationType:
    by_root = root_type(local)
    name = parse_notification_name(filename) if filename else None
    if by_root is not None:
        if name is not None and name.type is not by_root:
            warnings.append(
                f"file name {filename!r} says {name.type.value} but the root element "
                f"{local!r} is {by_root.value}: the root element wins"
            )
        return by_root
    if name is not None and not is_invoice_root(local):
        warnings.append(
            f"unknown root element {local!r}: type {name.type.value} taken from the file name"
        )
        return name.type
    raise MalformedMessage(f"not an SDI notification: root element {local!r}", subject=filename)


def _flow_from_namespace(namespace: str) -> Flow | None:
    text = namespace.strip().lower().rstrip("/").replace("https://", "http://")
    if "fatturapa.gov.it/sdi/messaggi" in text:
        return Flow.PA
    if "ivaservizi.agenziaentrate.gov.it" in text:
        return Flow.B2B
    return None


def _flow(root: etree._Element, local: str, warnings: list[str]) -> Flow:
    namespace = _namespace(root)
    if namespace == NS_PA:
        return Flow.PA
    if namespace == NS_B2B:
        return Flow.B2B
    flow = _flow_from_namespace(namespace)
    if flow is None:
        by_content = local.lower() in _B2B_ROOTS or _child(root, "Hash") is not None
        flow = Flow.B2B if by_content else Flow.PA
    shown = repr(namespace) if namespace else "no namespace"
    warnings.append(f"{shown} is not an SDI notification namespace: flow {flow.value} inferred")
    return flow


# ---------------------------------------------------------------- fields


def _esito(root: etree._Element, kind: NotificationType) -> str | None:
    if kind is NotificationType.NE:
        return _text(root, "EsitoCommittente", "Esito") or _text(root, "Esito")
    if kind is NotificationType.SE:
        return _text(root, "Scarto")
    return _text(root, "Esito")


def _descrizione(root: etree._Element, kind: NotificationType) -> str | None:
    direct = _text(root, "Descrizione")
    if direct is None and kind is NotificationType.NE:
        return _text(root, "EsitoCommittente", "Descrizione")
    return direct


def parse(data: bytes, filename: str | None = None) -> Notification:
    """Read one notification file; MalformedMessage when it is not XML or not a notification."""
    warnings: list[str] = []
    root = _tree(data, warnings)
    local = safexml.local_name(root)
    kind = _type(local, filename, warnings)
    identificativo = _text(root, "IdentificativoSdI")
    if identificativo is None and kind is NotificationType.NE:
        identificativo = _text(root, "EsitoCommittente", "IdentificativoSdI")
    return Notification(
        type=kind,
        flow=_flow(root, local, warnings),
        root=local,
        identificativo_sdi=identificativo,
        nome_file=_text(root, "NomeFile"),
        message_id=_text(root, "MessageId"),
        pec_message_id=_text(root, "PecMessageId"),
        data_ora_ricezione=_text(root, "DataOraRicezione"),
        errors=_errors(root),
        esito=_esito(root, kind),
        signed=_signed(root),
        hash=_text(root, "Hash") or _text(root, "HashFileOriginale"),
        codice_destinatario=_text(root, "CodiceDestinatario")
        or _text(root, "Destinatario", "Codice"),
        data_messa_a_disposizione=_text(root, "DataMessaADisposizione"),
        descrizione=_descrizione(root, kind),
        note=_text(root, "Note"),
        warnings=tuple(dict.fromkeys(warnings)),
    )
