"""PEC messages (RFC 6109): transport envelopes, provider receipts, anomalies, and plain mail.

Owns the reading of one raw mail: its PEC kind (headers, then daticert.xml, then subject), the
daticert.xml facts, the embedded postacert.eml and the ORIGINAL message's attachments. Pure: bytes
in, values out; never raises anything but MalformedMessage; odd MIME degrades into warnings.
"""

from __future__ import annotations

import base64
import binascii
import enum
import quopri
import re
from dataclasses import dataclass
from email import errors as email_errors
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses

from lxml import etree

from pecgateway import safexml
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


# The stdlib mail code raises these on hostile input (bad charsets, broken encoded words, parser bugs).
_EMAIL_FAILURES = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    AssertionError,
    RecursionError,
    email_errors.MessageError,
)
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
_MAX_DEPTH = 20
# Transport envelopes keep the provider identificativo as their Message-ID; receipts do not.
_ENVELOPES = frozenset({PecType.POSTA_CERTIFICATA, PecType.ANOMALIA})


# ---------------------------------------------------------------- headers


def _unsurrogate(text: str) -> str:
    """Raw 8-bit header bytes arrive as surrogate escapes: read them as UTF-8, else as cp1252."""
    if not any("\udc80" <= ch <= "\udcff" for ch in text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _unfold(value: str) -> str:
    return re.sub(r"\s+", " ", _unsurrogate(value)).strip()


def _decode_chunk(chunk: bytes | str, charset: str | None, warnings: list[str]) -> str:
    if isinstance(chunk, str):
        return chunk
    if charset is None or charset == "unknown-8bit":
        return chunk.decode("utf-8", "replace") if charset else chunk.decode("latin-1")
    try:
        return chunk.decode(charset, "replace")
    except LookupError:
        warnings.append(f"unknown charset {charset!r} in an encoded header word, read as latin-1")
        return chunk.decode("latin-1")


def _decode_words(value: str, warnings: list[str]) -> str:
    """Decode RFC 2047 encoded words; a broken word is kept as written, with a warning."""
    text = _unfold(value)
    if "=?" not in text:
        return text
    try:
        chunks = decode_header(text)
    except _EMAIL_FAILURES as exc:
        warnings.append(f"undecodable encoded words in a header kept as written ({exc})")
        return text
    decoded = _unfold("".join(_decode_chunk(c, cs, warnings) for c, cs in chunks))
    if not decoded:
        warnings.append(f"encoded words decode to nothing; header kept as written: {text!r}")
        return text
    return decoded


class _Headers:
    """Case-insensitive access to the raw header values, never through the stdlib header classes."""

    def __init__(self, message: Message) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in message.raw_items():
            self._values.setdefault(name.strip().lower(), []).append(str(value))

    def __bool__(self) -> bool:
        return bool(self._values)

    def raw(self, name: str) -> str | None:
        values = self._values.get(name.lower())
        return _unfold(values[0]) if values else None

    def text(self, name: str, warnings: list[str]) -> str | None:
        values = self._values.get(name.lower())
        return _decode_words(values[0], warnings) if values else None

    def addresses(self, name: str, warnings: list[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for value in self._values.get(name.lower(), []):
            try:
                pairs = getaddresses([_unfold(value)])
            except _EMAIL_FAILURES as exc:
                warnings.append(f"unreadable {name} header ignored ({exc})")
                continue
            found += [(_decode_words(n, warnings), a.strip()) for n, a in pairs if "@" in a]
        return found


def normalize_message_id(value: str) -> str | None:
    """``" <ID@Domain.IT>"`` folded or spaced -> ``"<ID@domain.it>"``; None when empty."""
    text = re.sub(r"\s+", "", _unsurrogate(value))
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


# ---------------------------------------------------------------- MIME structure


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except _EMAIL_FAILURES:
        return "application/octet-stream"


def _filename(part: Message, warnings: list[str]) -> str | None:
    try:
        name = part.get_filename() or part.get_param("name")
    except _EMAIL_FAILURES as exc:
        warnings.append(f"unreadable attachment file name ignored ({exc})")
        return None
    if isinstance(name, tuple):  # RFC 2231 triple from get_param
        name = name[2]
    if not isinstance(name, str):
        return None
    return _decode_words(name, warnings) or None


def _cte(part: Message) -> str:
    for name, value in part.raw_items():
        if name.strip().lower() == "content-transfer-encoding":
            return _unfold(str(value)).lower()
    return ""


def _payload_bytes(part: Message, warnings: list[str]) -> bytes:
    """Decoded payload; identity or unknown CTEs (7bit, 8bit, binary, x-foo) are no-ops."""
    try:
        data = part.get_payload(decode=True)
    except _EMAIL_FAILURES as exc:
        warnings.append(f"undecodable part kept raw ({exc})")
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def _is_message_part(part: Message) -> bool:
    return _content_type(part).startswith("message/")


def _leaves(message: Message, depth: int = 0) -> list[Message]:
    """The leaf parts of a message (message/* parts are leaves: never walked into here)."""
    if depth > _MAX_DEPTH:
        return []
    if message.is_multipart() and not _is_message_part(message):
        found: list[Message] = []
        for child in _children(message):
            found += _leaves(child, depth + 1)
        return found
    return [message]


def _has_headers(message: Message) -> bool:
    return next(iter(message.raw_items()), None) is not None


def _parse_bytes(raw: bytes) -> Message:
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except _EMAIL_FAILURES as exc:
        raise MalformedMessage(f"not an e-mail message: the MIME parser failed ({exc})") from exc
    if not _has_headers(message):
        raise MalformedMessage("not an e-mail message: no header lines before the body")
    return message


def _embedded_message(part: Message, warnings: list[str]) -> Message | None:
    """The message inside a postacert.eml part, whatever its content type or CTE."""
    inner = _children(part) if _is_message_part(part) else []
    if inner and _has_headers(inner[0]):
        return inner[0]
    if inner:  # message/rfc822 sent with a base64 / quoted-printable CTE: the parser saw no headers
        data = _decode_transfer(_payload_bytes(inner[0], warnings), _cte(part))
    else:  # application/octet-stream (or anything) named postacert.eml
        data = _payload_bytes(part, warnings)
    try:
        return _parse_bytes(data)
    except MalformedMessage:
        warnings.append("postacert.eml is not a readable e-mail message; its content is ignored")
        return None


def _decode_transfer(data: bytes, cte: str) -> bytes:
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    if cte != "base64":
        return data
    try:
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
        return base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except (binascii.Error, ValueError):
        return data


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
    for part in _leaves(message):
        name = (_filename(part, warnings) or "").strip().lower()
        if name == "daticert.xml" and found.daticert is None:
            found.daticert = part
        elif name == "postacert.eml" and found.postacert is None:
            found.postacert = part
    if found.postacert is None:  # an unnamed embedded message also counts
        found.postacert = next((p for p in _leaves(message) if _is_message_part(p)), None)
    return found


def _message_bytes(message: Message, warnings: list[str]) -> bytes | None:
    """Serialise a parsed message without refolding its headers (as close to the source as we can)."""
    out = policy.default.clone(refold_source="none", cte_type="8bit", max_line_length=0)
    try:
        return message.as_bytes(policy=out)
    except _EMAIL_FAILURES as exc:
        warnings.append(f"the embedded message could not be re-serialised ({exc})")
        return None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except _EMAIL_FAILURES:
        return None


def _safe_name(name: str) -> str:
    base = re.split(r"[/\\]", name)[-1]
    return "".join(ch for ch in base if ch.isprintable()).strip().lstrip(".")


def _attachment(part: Message, index: int, warnings: list[str]) -> Attachment | None:
    ctype, name = _content_type(part), _filename(part, warnings)
    if (name or "").strip().lower() in _SERVICE_NAMES or ctype in _SIGNATURE_TYPES:
        return None
    if ctype.startswith("multipart/"):
        return None
    if not name and ctype in _BODY_TYPES and _disposition(part) != "attachment":
        return None  # a message body, not an attachment
    if _is_message_part(part):
        inner = _children(part)
        data = (_message_bytes(inner[0], warnings) if inner else None) or _payload_bytes(
            part, warnings
        )
    else:
        data = _payload_bytes(part, warnings)
    filename = _safe_name(name or "")
    if not filename:
        extension = (
            ".eml" if _is_message_part(part) else ".xml" if ctype.endswith("/xml") else ".bin"
        )
        filename = f"part-{index}{extension}"
    return Attachment(filename=filename, content_type=ctype, data=data)


def _attachments(message: Message, warnings: list[str]) -> tuple[Attachment, ...]:
    found = (_attachment(part, i, warnings) for i, part in enumerate(_leaves(message), 1))
    return tuple(a for a in found if a is not None)


# ---------------------------------------------------------------- classification


def _type_from_headers(headers: _Headers, warnings: list[str]) -> PecType | None:
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


def _looks_like_pec(headers: _Headers, envelope: _Envelope, warnings: list[str]) -> bool:
    """PEC evidence besides the subject: the X- headers, a daticert.xml, the provider's From."""
    if headers.raw("X-Ricevuta") is not None or headers.raw("X-Trasporto") is not None:
        return True
    if envelope.daticert is not None:
        return True
    senders = headers.addresses("From", warnings)
    return any(address.lower().startswith("posta-certificata@") for _, address in senders)


def _classify(
    headers: _Headers, envelope: _Envelope, daticert: Daticert | None, warnings: list[str]
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


def _per_conto_di(headers: _Headers, warnings: list[str]) -> str | None:
    for name, _ in headers.addresses("From", warnings):
        match = _PER_CONTO_DI.search(name)
        if match:
            return match.group(1).strip("<>\"'")
    return None


def _first_address(headers: _Headers, name: str, warnings: list[str]) -> str | None:
    found = headers.addresses(name, warnings)
    return found[0][1] if found else None


def _sdi_address(candidates: list[str | None]) -> str | None:
    """sdiNN@pec.fatturapa.it from the given sources in order; never the outer From (F1)."""
    for candidate in candidates:
        match = _SDI_ADDRESS.fullmatch((candidate or "").strip().strip("<>"))
        if match:
            return match.group(0).lower()
    return None


# ---------------------------------------------------------------- parse


def _inner(
    kind: PecType | None, envelope: _Envelope, warnings: list[str]
) -> tuple[Message | None, bytes | None]:
    if kind is None or envelope.postacert is None:
        return None, None
    inner = _embedded_message(envelope.postacert, warnings)
    if inner is None:
        return None, None
    return inner, _message_bytes(inner, warnings)


def parse(raw: bytes) -> PecMessage:
    """Read one raw mail; raise MalformedMessage only when it is not an e-mail message at all."""
    warnings: list[str] = []
    message = _parse_bytes(raw)
    headers = _Headers(message)
    envelope = _envelope_parts(message, warnings)
    daticert = None
    if envelope.daticert is not None:
        daticert = _parse_daticert(_payload_bytes(envelope.daticert, warnings), warnings)
    kind = _classify(headers, envelope, daticert, warnings)
    inner, postacert = _inner(kind, envelope, warnings)
    inner_headers = _Headers(inner) if inner is not None else None
    per_conto_di = _per_conto_di(headers, warnings)
    inner_from = _first_address(inner_headers, "From", warnings) if inner_headers else None
    mittente = (daticert.mittente if daticert else None) or per_conto_di
    mittente = mittente or _first_address(headers, "Reply-To", warnings)
    mittente = mittente or _first_address(headers, "From", warnings)
    message_id = _message_id(headers, "Message-ID")
    riferimento = _message_id(headers, "X-Riferimento-Message-ID")
    identificativo = daticert.identificativo if daticert else None
    if identificativo is None and kind in _ENVELOPES and message_id is not None:
        identificativo = message_id.strip("<>")
    return PecMessage(
        type=kind,
        identificativo=identificativo,
        riferimento_message_id=riferimento or _normalized(daticert.msgid if daticert else None),
        message_id=message_id,
        mittente=mittente,
        destinatari=_destinatari(headers, daticert, warnings),
        oggetto=(daticert.oggetto if daticert else None) or headers.text("Subject", warnings),
        gestore=daticert.gestore if daticert else None,
        errore=daticert.errore if daticert else None,
        errore_esteso=daticert.errore_esteso if daticert else None,
        sdi_address=_sdi_address(
            [
                _first_address(headers, "Reply-To", warnings),
                inner_from,
                per_conto_di,
                daticert.mittente if daticert else None,
            ]
        ),
        daticert=daticert,
        postacert=postacert,
        attachments=_attachments(inner if inner is not None else message, warnings),
        warnings=tuple(dict.fromkeys(warnings)),
    )


def _normalized(value: str | None) -> str | None:
    return normalize_message_id(value) if value else None


def _message_id(headers: _Headers, name: str) -> str | None:
    return _normalized(headers.raw(name))


def _destinatari(
    headers: _Headers, daticert: Daticert | None, warnings: list[str]
) -> tuple[str, ...]:
    if daticert is not None and daticert.destinatari:
        return daticert.destinatari
    found = headers.addresses("To", warnings) + headers.addresses("Cc", warnings)
    return tuple(dict.fromkeys(address for _, address in found))
