"""PEC messages (RFC 6109): transport envelopes, provider receipts, anomalies, and plain mail.

Owns the reading of one raw mail: its PEC kind (headers, then daticert.xml, then subject), the
daticert.xml facts, the embedded postacert.eml and the ORIGINAL message's attachments. Pure: bytes
in, values out; never raises anything but MalformedMessage; odd MIME degrades into warnings.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.message import Message

from lxml import etree

from pecgateway import mail, safexml
from pecgateway.errors import MalformedMessage

__all__ = [
    "Attachment",
    "Daticert",
    "PecMessage",
    "PecType",
    "normalize_message_id",
    "parse",
]


class PecType(enum.Enum):
    """The PEC kind, named by the X-Ricevuta / X-Trasporto / daticert ``tipo`` spec values."""

    POSTA_CERTIFICATA = "posta-certificata"
    ACCETTAZIONE = "accettazione"
    NON_ACCETTAZIONE = "non-accettazione"
    PRESA_IN_CARICO = "presa-in-carico"
    AVVENUTA_CONSEGNA = "avvenuta-consegna"
    ERRORE_CONSEGNA = "errore-consegna"
    PREAVVISO_ERRORE_CONSEGNA = "preavviso-errore-consegna"
    RILEVAZIONE_VIRUS = "rilevazione-virus"
    ANOMALIA = "anomalia"  # X-Trasporto: errore


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Daticert:
    tipo: str | None
    errore: str | None
    mittente: str | None
    destinatari: tuple[str, ...]
    risposte: str | None
    oggetto: str | None
    gestore: str | None
    data: str | None
    identificativo: str | None
    msgid: str | None
    ricevuta: str | None
    consegna: str | None
    errore_esteso: str | None


@dataclass(frozen=True, slots=True)
class PecMessage:
    type: PecType | None  # None: not a PEC message (plain email) or a PEC of unknown kind
    identificativo: str | None
    riferimento_message_id: str | None
    message_id: str | None
    mittente: str | None
    destinatari: tuple[str, ...]
    oggetto: str | None
    gestore: str | None
    errore: str | None
    errore_esteso: str | None
    sdi_address: str | None
    daticert: Daticert | None
    postacert: bytes | None
    attachments: tuple[Attachment, ...]
    warnings: tuple[str, ...]


_SERVICE_NAMES = frozenset({"daticert.xml", "smime.p7s", "postacert.eml"})
_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_SDI_ADDRESS = re.compile(r"sdi\d{1,3}@pec\.fatturapa\.it", re.IGNORECASE)
_PER_CONTO_DI = re.compile(r"per\s+conto\s+di\s*:\s*(\S+@\S+)", re.IGNORECASE)
_TRASPORTO: dict[str, PecType] = {
    "posta-certificata": PecType.POSTA_CERTIFICATA,
    "errore": PecType.ANOMALIA,
}
_TIPO: dict[str, PecType] = {t.value: t for t in PecType} | {"errore": PecType.ANOMALIA}
_RICEVUTA: dict[str, PecType] = {
    t.value: t for t in PecType if t not in (PecType.POSTA_CERTIFICATA, PecType.ANOMALIA)
}
# Longest prefixes first: "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO" before "... CONSEGNA".
_SUBJECT_PREFIXES = (
    ("AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO", PecType.PREAVVISO_ERRORE_CONSEGNA),
    ("AVVISO DI MANCATA CONSEGNA", PecType.ERRORE_CONSEGNA),
    ("AVVISO DI NON ACCETTAZIONE", PecType.NON_ACCETTAZIONE),
    ("ACCETTAZIONE:", PecType.ACCETTAZIONE),
    ("CONSEGNA:", PecType.AVVENUTA_CONSEGNA),
    ("POSTA CERTIFICATA:", PecType.POSTA_CERTIFICATA),
    ("ANOMALIA MESSAGGIO:", PecType.ANOMALIA),
    ("PRESA IN CARICO", PecType.PRESA_IN_CARICO),
    ("PROBLEMA DI SICUREZZA", PecType.RILEVAZIONE_VIRUS),
)
mail.MAX_DEPTH = 20
# Transport envelopes keep the provider identificativo as their Message-ID; receipts do not.
_ENVELOPES = frozenset({PecType.POSTA_CERTIFICATA, PecType.ANOMALIA})


def normalize_message_id(value: str) -> str | None:
    """``" <ID@Domain.IT>"`` folded or spaced -> ``"<ID@domain.it>"``; None when empty."""
    text = re.sub(r"\s+", "", mail.unsurrogate(value))
    text = text.strip("<>")
    if "<" in text or ">" in text:  # several ids or junk around one: keep the first bracketed one
        match = re.search(r"<([^<>]+)>", f"<{text}>")
        text = match.group(1) if match else text.replace("<", "").replace(">", "")
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    if not at:
        return f"<{text}>"
    return f"<{local}@{domain.lower()}>"


# ---------------------------------------------------------------- daticert.xml


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def _find(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    return next((c for c in parent if safexml.local_name(c) == name), None)


def _daticert_root(data: bytes, warnings: list[str]) -> etree._Element | None:
    try:
        root = safexml.parse(data)
    except MalformedMessage:
        try:
            root = safexml.parse_recovering(data)
        except MalformedMessage as exc:
            warnings.append(f"daticert.xml is unreadable and was ignored ({exc.reason})")
            return None
        warnings.append("daticert.xml is not well-formed XML: read with recovery")
    if safexml.local_name(root) != "postacert":
        warnings.append(
            f"daticert.xml has root element {safexml.local_name(root)!r}, not postacert"
        )
        return None
    return root


def _data_text(dati: etree._Element | None) -> str | None:
    data = _find(dati, "data")
    if data is None:
        return None
    parts = [_text(_find(data, "giorno")), _text(_find(data, "ora")), data.get("zona")]
    return " ".join(p.strip() for p in parts if p and p.strip()) or None


def _parse_daticert(data: bytes, warnings: list[str]) -> Daticert | None:
    root = _daticert_root(data, warnings)
    if root is None:
        return None
    head, dati = _find(root, "intestazione"), _find(root, "dati")
    ricevuta = _find(dati, "ricevuta")
    recipients = [
        c for c in (head if head is not None else ()) if safexml.local_name(c) == "destinatari"
    ]
    return Daticert(
        tipo=(root.get("tipo") or "").strip().lower() or None,
        errore=(root.get("errore") or "").strip() or None,
        mittente=_text(_find(head, "mittente")),
        destinatari=tuple(t for t in (_text(c) for c in recipients) if t),
        risposte=_text(_find(head, "risposte")),
        oggetto=_text(_find(head, "oggetto")),
        gestore=_text(_find(dati, "gestore-emittente")),
        data=_data_text(dati),
        identificativo=_text(_find(dati, "identificativo")),
        msgid=_text(_find(dati, "msgid")),
        ricevuta=(ricevuta.get("tipo") if ricevuta is not None else None),
        consegna=_text(_find(dati, "consegna")),
        errore_esteso=_text(_find(dati, "errore-esteso")),
    )


# ---------------------------------------------------------------- envelope parts


@dataclass(slots=True)
class _Envelope:
    """The service parts found at the top level of a mail (outside any embedded message)."""

    daticert: Message | None = None
    postacert: Message | None = None


def _envelope_parts(message: Message, warnings: list[str]) -> _Envelope:
    found = _Envelope()
    for part in mail.leaves(message):
        name = (mail.filename(part, warnings) or "").strip().lower()
        if name == "daticert.xml" and found.daticert is None:
            found.daticert = part
        elif name == "postacert.eml" and found.postacert is None:
            found.postacert = part
    if found.postacert is None:  # an unnamed embedded message also counts
        found.postacert = next((p for p in mail.leaves(message) if mail.is_message_part(p)), None)
    return found


def _attachment(part: Message, index: int, warnings: list[str]) -> Attachment | None:
    ctype, name = mail.content_type(part), mail.filename(part, warnings)
    if (name or "").strip().lower() in _SERVICE_NAMES or ctype in _SIGNATURE_TYPES:
        return None
    if ctype.startswith("multipart/"):
        return None
    if not name and ctype in _BODY_TYPES and mail.disposition(part) != "attachment":
        return None  # a message body, not an attachment
    data = _part_data(part, warnings)
    filename = mail.safe_name(name or "") or f"part-{index}{_extension(part, ctype)}"
    return Attachment(filename=filename, content_type=ctype, data=data)


def _part_data(part: Message, warnings: list[str]) -> bytes:
    inner = mail.children(part) if mail.is_message_part(part) else []
    serialised = mail.message_bytes(inner[0], warnings) if inner else None
    return serialised or mail.payload_bytes(part, warnings)


def _extension(part: Message, ctype: str) -> str:
    if mail.is_message_part(part):
        return ".eml"
    return ".xml" if ctype.endswith("/xml") else ".bin"


def _attachments(message: Message, warnings: list[str]) -> tuple[Attachment, ...]:
    found = (_attachment(part, i, warnings) for i, part in enumerate(mail.leaves(message), 1))
    return tuple(a for a in found if a is not None)


# ---------------------------------------------------------------- classification


def _type_from_headers(headers: mail.Headers, warnings: list[str]) -> PecType | None:
    ricevuta, trasporto = headers.raw("X-Ricevuta"), headers.raw("X-Trasporto")
    if ricevuta is not None and trasporto is not None:
        warnings.append("both X-Ricevuta and X-Trasporto are present: X-Ricevuta wins")
    if ricevuta is not None:
        found = _RICEVUTA.get(ricevuta.lower())
        if found is None:  # field quirk F5: never default an unknown receipt to accettazione
            warnings.append(
                f"unknown X-Ricevuta value {ricevuta!r}: not treated as accettazione, "
                "the kind is taken from daticert.xml or the subject"
            )
        return found
    if trasporto is not None:
        found = _TRASPORTO.get(trasporto.lower())
        if found is None:
            warnings.append(
                f"unknown X-Trasporto value {trasporto!r}: kind from daticert.xml or subject"
            )
        return found
    return None


def _type_from_subject(subject: str | None) -> PecType | None:
    upper = (subject or "").strip().upper()
    return next((t for prefix, t in _SUBJECT_PREFIXES if upper.startswith(prefix)), None)


def _looks_like_pec(headers: mail.Headers, envelope: _Envelope, warnings: list[str]) -> bool:
    """PEC evidence besides the subject: the X- headers, a daticert.xml, the provider's From."""
    if headers.raw("X-Ricevuta") is not None or headers.raw("X-Trasporto") is not None:
        return True
    if envelope.daticert is not None:
        return True
    senders = headers.addresses("From", warnings)
    return any(address.lower().startswith("posta-certificata@") for _, address in senders)


def _classify(
    headers: mail.Headers, envelope: _Envelope, daticert: Daticert | None, warnings: list[str]
) -> PecType | None:
    subject = headers.text("Subject", warnings)
    by_tipo = _TIPO.get(daticert.tipo or "") if daticert else None
    found = _type_from_headers(headers, warnings)
    if found is not None:
        if by_tipo is not None and by_tipo is not found:
            warnings.append(f"daticert.xml tipo {by_tipo.value!r} disagrees with the headers")
        return found
    if by_tipo is not None:
        return by_tipo
    if not _looks_like_pec(headers, envelope, warnings):
        if _type_from_subject(subject) is not None:
            warnings.append(
                "the subject looks like a PEC receipt but there is no PEC header or "
                "daticert.xml: treated as plain e-mail"
            )
        return None
    found = _type_from_subject(subject)
    if found is None:
        warnings.append(
            "PEC-looking message of unknown kind (no known X-Ricevuta/X-Trasporto, "
            "daticert tipo or subject prefix): treated as not PEC"
        )
    else:
        warnings.append(f"PEC kind {found.value!r} guessed from the subject only")
    return found


# ---------------------------------------------------------------- addresses


def _per_conto_di(headers: mail.Headers, warnings: list[str]) -> str | None:
    for name, _ in headers.addresses("From", warnings):
        match = _PER_CONTO_DI.search(name)
        if match:
            return match.group(1).strip("<>\"'")
    return None


def _first_address(headers: mail.Headers | None, name: str, warnings: list[str]) -> str | None:
    found = headers.addresses(name, warnings) if headers is not None else []
    return found[0][1] if found else None


def _mittente(headers: mail.Headers, daticert: Daticert | None, warnings: list[str]) -> str | None:
    """daticert mittente, else "Per conto di:" in the From name, else Reply-To, else From."""
    return (
        (daticert.mittente if daticert else None)
        or _per_conto_di(headers, warnings)
        or _first_address(headers, "Reply-To", warnings)
        or _first_address(headers, "From", warnings)
    )


def _sdi_address(
    headers: mail.Headers,
    inner: mail.Headers | None,
    daticert: Daticert | None,
    warnings: list[str],
) -> str | None:
    """sdiNN@pec.fatturapa.it from Reply-To, the inner From, "Per conto di:" or daticert mittente.

    Never from the outer From address: that is the provider's (field quirk F1).
    """
    candidates = (
        _first_address(headers, "Reply-To", warnings),
        _first_address(inner, "From", warnings),
        _per_conto_di(headers, warnings),
        daticert.mittente if daticert else None,
    )
    for candidate in candidates:
        match = _SDI_ADDRESS.fullmatch((candidate or "").strip().strip("<>"))
        if match:
            return match.group(0).lower()
    return None


def _destinatari(
    headers: mail.Headers, daticert: Daticert | None, warnings: list[str]
) -> tuple[str, ...]:
    if daticert is not None and daticert.destinatari:
        return daticert.destinatari
    found = headers.addresses("To", warnings) + headers.addresses("Cc", warnings)
    return tuple(dict.fromkeys(address for _, address in found))


# ---------------------------------------------------------------- parse


def _inner(
    kind: PecType | None, envelope: _Envelope, warnings: list[str]
) -> tuple[Message | None, bytes | None]:
    if kind is None or envelope.postacert is None:
        return None, None
    inner = mail.embedded_message(envelope.postacert, warnings)
    if inner is None:
        return None, None
    return inner, mail.message_bytes(inner, warnings)


def _normalized(value: str | None) -> str | None:
    return normalize_message_id(value) if value else None


def _identificativo(
    kind: PecType | None, daticert: Daticert | None, message_id: str | None
) -> str | None:
    if daticert is not None and daticert.identificativo:
        return daticert.identificativo
    if kind in _ENVELOPES and message_id is not None:
        return message_id.strip("<>")
    return None


def parse(raw: bytes) -> PecMessage:
    """Read one raw mail; raise MalformedMessage only when it is not an e-mail message at all."""
    warnings: list[str] = []
    message = mail.parse_bytes(raw)
    headers = mail.Headers(message)
    envelope = _envelope_parts(message, warnings)
    daticert = None
    if envelope.daticert is not None:
        daticert = _parse_daticert(mail.payload_bytes(envelope.daticert, warnings), warnings)
    kind = _classify(headers, envelope, daticert, warnings)
    inner, postacert = _inner(kind, envelope, warnings)
    inner_headers = mail.Headers(inner) if inner is not None else None
    message_id = _normalized(headers.raw("Message-ID"))
    riferimento = _normalized(headers.raw("X-Riferimento-Message-ID"))
    return PecMessage(
        type=kind,
        identificativo=_identificativo(kind, daticert, message_id),
        riferimento_message_id=riferimento or _normalized(daticert.msgid if daticert else None),
        message_id=message_id,
        mittente=_mittente(headers, daticert, warnings),
        destinatari=_destinatari(headers, daticert, warnings),
        oggetto=(daticert.oggetto if daticert else None) or headers.text("Subject", warnings),
        gestore=daticert.gestore if daticert else None,
        errore=daticert.errore if daticert else None,
        errore_esteso=daticert.errore_esteso if daticert else None,
        sdi_address=_sdi_address(headers, inner_headers, daticert, warnings),
        daticert=daticert,
        postacert=postacert,
        attachments=_attachments(inner if inner is not None else message, warnings),
        warnings=tuple(dict.fromkeys(warnings)),
    )
