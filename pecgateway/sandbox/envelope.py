"""Builders of the messages a PEC provider writes: receipts, notices and transport envelopes.

Each builder returns the raw bytes of a real S/MIME ``multipart/signed`` message modelled header by
header on real provider messages (Aruba, Sogei): human text (plain + HTML, ISO-8859-1),
``daticert.xml`` and, where the kind requires it, ``postacert.eml``. Pure apart from signing; time and
identifiers are arguments. The same builders make the test suite's PEC fixtures.
"""

from __future__ import annotations

import enum
import hashlib
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape

from pecgateway.sandbox import smime
from pecgateway.sandbox.ca import KeyPair
from pecgateway.sandbox.postacert import breve, postacert

__all__ = [
    "Gestore",
    "Original",
    "TipoRicevuta",
    "build_accettazione",
    "build_consegna",
    "build_daticert",
    "build_errore_consegna",
    "build_non_accettazione",
    "build_posta_certificata",
    "build_preavviso_errore_consegna",
]


class TipoRicevuta(enum.Enum):
    """The delivery receipt the sender asked for with ``X-TipoRicevuta``."""

    COMPLETA = "completa"
    BREVE = "breve"
    SINTETICA = "sintetica"


@dataclass(frozen=True, slots=True)
class Gestore:
    """A PEC provider: its name in daticert, its mail domain and its signing key pair."""

    name: str
    domain: str
    signer: KeyPair
    micalg: str = "sha-256"  # or "sha-512" (real ones say sha1, which cryptography cannot sign)

    @property
    def address(self) -> str:
        return f"posta-certificata@{self.domain}"


@dataclass(frozen=True, slots=True)
class Original:
    """The user message a provider message is about, as the sender's provider accepted it."""

    mittente: str
    destinatari: tuple[str, ...]
    oggetto: str
    identificativo: str  # the sender's provider's id: the Message-ID it gives the transported copy
    msgid: str | None  # the sender's own Message-ID, "<...>"
    raw: bytes = b""  # the submitted message (for postacert.eml)
    risposte: str | None = None  # Reply-To; defaults to mittente
    ricevuta: TipoRicevuta = TipoRicevuta.COMPLETA
    received: str = field(default="")  # an optional Received: line for postacert.eml

    @property
    def reply_to(self) -> str:
        return self.risposte or self.mittente


@dataclass(frozen=True, slots=True)
class _Kind:
    tipo: str
    subject_prefix: str
    title: str


_ACCETTAZIONE = _Kind("accettazione", "ACCETTAZIONE", "Ricevuta di accettazione")
_NON_ACCETTAZIONE = _Kind(
    "non-accettazione", "AVVISO DI NON ACCETTAZIONE", "Avviso di non accettazione"
)
_CONSEGNA = _Kind("avvenuta-consegna", "CONSEGNA", "Ricevuta di avvenuta consegna")
_ERRORE = _Kind("errore-consegna", "AVVISO DI MANCATA CONSEGNA", "Avviso di mancata consegna")
_PREAVVISO = _Kind(
    "preavviso-errore-consegna",
    "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO",
    "Avviso di mancata consegna per superamento tempo massimo",
)
_TRASPORTO = _Kind("posta-certificata", "POSTA CERTIFICATA", "Messaggio di posta certificata")


def _when(now: datetime) -> tuple[str, str, str]:
    """(giorno, ora, zona) as daticert writes them; ``now`` must be timezone-aware."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("PEC times need a timezone-aware datetime")
    return now.strftime("%d/%m/%Y"), now.strftime("%H:%M:%S"), now.strftime("%z")


def build_daticert(
    *,
    tipo: str,
    errore: str,
    original: Original,
    gestore: Gestore,
    now: datetime,
    ricevuta: TipoRicevuta | None = None,
    consegna: str | None = None,
    errore_esteso: str | None = None,
) -> bytes:
    """``daticert.xml`` laid out exactly like the providers' (root ``postacert``, no namespace)."""
    giorno, ora, zona = _when(now)
    lines = [f'<?xml version="1.0" encoding="UTF-8"?>\n<postacert tipo="{tipo}" errore="{errore}">']
    lines += ["    <intestazione>", f"        <mittente>{escape(original.mittente)}</mittente>"]
    lines += [
        f'        <destinatari tipo="certificato">{escape(d)}</destinatari>'
        for d in original.destinatari
    ]
    lines += [f"        <risposte>{escape(original.reply_to)}</risposte>"]
    lines += [f"        <oggetto>{escape(original.oggetto)}</oggetto>", "    </intestazione>"]
    lines += [
        "    <dati>",
        f"        <gestore-emittente>{escape(gestore.name)}</gestore-emittente>",
    ]
    lines += [f'        <data zona="{zona}">', f"            <giorno>{giorno}</giorno>"]
    lines += [f"            <ora>{ora}</ora>", "        </data>"]
    lines += [f"        <identificativo>{escape(original.identificativo)}</identificativo>"]
    if original.msgid:
        lines += [f"        <msgid>{escape(original.msgid)}</msgid>"]
    if ricevuta is not None:
        lines += [f'        <ricevuta tipo="{ricevuta.value}" />']
    if consegna is not None:
        lines += [f"        <consegna>{escape(consegna)}</consegna>"]
    if errore_esteso is not None:
        lines += [f"        <errore-esteso>{escape(errore_esteso)}</errore-esteso>"]
    lines += ["    </dati>", "</postacert>", ""]
    return "\n".join(lines).encode("utf-8")


def _alternative(kind: _Kind, paragraphs: Sequence[str]) -> bytes:
    plain = f"-- {kind.title} --\n\n" + "\n".join(paragraphs) + "\n"
    body = "<br>\n".join(html.escape(p) for p in paragraphs)
    page = (
        f"<html>\n<head><title>{kind.title}</title></head>\n<body>\n<h3>{kind.title}</h3>\n"
        f"<hr><br>\n{body}<br>\n</body>\n</html>\n"
    )
    texts = [
        smime.part(_text_headers(subtype), smime.quoted_printable(text))
        for subtype, text in (("plain", plain), ("html", page))
    ]
    return smime.multipart(
        "multipart/alternative", texts, [("Content-Transfer-Encoding", "binary")]
    )


def _text_headers(subtype: str) -> smime.Headers:
    return [
        ("Content-Type", f'text/{subtype}; charset="iso-8859-1"'),
        ("Content-Disposition", "inline"),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ]


def _daticert_part(daticert: bytes) -> bytes:
    headers = [
        ("Content-Type", 'application/xml; name="daticert.xml"'),
        ("Content-Disposition", 'inline; filename="daticert.xml"'),
        ("Content-Transfer-Encoding", "base64"),
    ]
    return smime.part(headers, smime.base64_body(daticert, 60))


def _postacert_part(message: bytes) -> bytes:
    headers = [
        ("Content-Type", 'message/rfc822; name="postacert.eml"'),
        ("Content-Disposition", 'inline; filename="postacert.eml"'),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    return smime.part(headers, message)


def _sign(headers: smime.Headers, parts: Sequence[bytes], gestore: Gestore) -> bytes:
    mixed = smime.multipart(
        "multipart/mixed", parts, [("Content-Transfer-Encoding", "binary"), ("MIME-Version", "1.0")]
    )
    return smime.signed_message(headers, mixed, gestore.signer, gestore.micalg)


def _receipt_id(original: Original, tag: str) -> str:
    """A receipt's own Message-ID, derived from the identificativo it is about."""
    local, _, domain = original.identificativo.partition("@")
    digest = hashlib.sha256(tag.encode()).hexdigest()[:6]
    return f"<{local}.{digest}@{domain}>"


def _receipt(
    kind: _Kind,
    gestore: Gestore,
    original: Original,
    now: datetime,
    paragraphs: Sequence[str],
    daticert: bytes,
    extra_parts: Sequence[bytes] = (),
    tag: str = "",
) -> bytes:
    headers = [
        ("Subject", f"{kind.subject_prefix}: {original.oggetto}"),
        *([("X-Riferimento-Message-ID", original.msgid)] if original.msgid else []),
        ("Date", format_datetime(now)),
        ("To", original.mittente),
        ("X-Ricevuta", kind.tipo),
        ("From", gestore.address),
        ("Message-ID", _receipt_id(original, kind.tipo + tag)),
    ]
    parts = [_alternative(kind, paragraphs), _daticert_part(daticert), *extra_parts]
    return _sign(headers, parts, gestore)


def _opening(original: Original, now: datetime, verb: str) -> list[str]:
    giorno, ora, zona = _when(now)
    return [
        f"Il giorno {giorno} alle ore {ora} ({zona}) il messaggio con Oggetto",
        f'"{original.oggetto}" inviato da "{original.mittente}"',
        verb,
    ]


def build_accettazione(gestore: Gestore, original: Original, now: datetime) -> bytes:
    """ACCETTAZIONE: the sender's provider took the message in charge (no postacert.eml)."""
    paragraphs = _opening(original, now, "ed indirizzato a:")
    paragraphs += [f'{d} ("posta certificata")' for d in original.destinatari]
    paragraphs += [
        "è stato accettato dal sistema ed inoltrato.",
        f"Identificativo del messaggio: {original.identificativo}",
        "L'allegato daticert.xml contiene informazioni di servizio sulla trasmissione",
    ]
    daticert = build_daticert(
        tipo=_ACCETTAZIONE.tipo, errore="nessuno", original=original, gestore=gestore, now=now
    )
    return _receipt(_ACCETTAZIONE, gestore, original, now, paragraphs, daticert)


def build_non_accettazione(
    gestore: Gestore, original: Original, now: datetime, errore_esteso: str
) -> bytes:
    """AVVISO DI NON ACCETTAZIONE: the message failed the provider's formal checks."""
    paragraphs = _opening(original, now, "non è stato accettato per il seguente errore:")
    paragraphs += [errore_esteso, "Il messaggio non è stato inoltrato."]
    daticert = build_daticert(
        tipo=_NON_ACCETTAZIONE.tipo,
        errore="altro",
        original=original,
        gestore=gestore,
        now=now,
        errore_esteso=errore_esteso,
    )
    return _receipt(_NON_ACCETTAZIONE, gestore, original, now, paragraphs, daticert)


def build_consegna(gestore: Gestore, original: Original, recipient: str, now: datetime) -> bytes:
    """CONSEGNA for ``recipient``: completa (postacert.eml), breve (attachments as hashes) or
    sintetica (daticert only), as ``original.ricevuta`` asks."""
    paragraphs = _opening(original, now, f'ed indirizzato a "{recipient}"')
    paragraphs += [
        "è stato correttamente consegnato al destinatario.",
        f"Identificativo del messaggio: {original.identificativo}",
    ]
    extra: list[bytes] = []
    if original.ricevuta is TipoRicevuta.COMPLETA:
        extra = [_postacert_part(postacert(original))]
        paragraphs += ['Il messaggio originale è incluso in allegato ("postacert.eml").']
    elif original.ricevuta is TipoRicevuta.BREVE:
        extra = [_postacert_part(breve(postacert(original)))]
        paragraphs += [
            "Il messaggio originale è incluso in allegato con gli allegati ridotti alle "
            + "rispettive impronte (hash)."
        ]
    daticert = build_daticert(
        tipo=_CONSEGNA.tipo,
        errore="nessuno",
        original=original,
        gestore=gestore,
        now=now,
        ricevuta=original.ricevuta,
        consegna=recipient,
    )
    return _receipt(_CONSEGNA, gestore, original, now, paragraphs, daticert, extra, recipient)


def _error_notice(
    kind: _Kind,
    gestore: Gestore,
    original: Original,
    recipient: str,
    now: datetime,
    errore: str,
    errore_esteso: str,
) -> bytes:
    giorno, ora, zona = _when(now)
    paragraphs = [
        f"Il giorno {giorno} alle ore {ora} ({zona}) nel messaggio con Oggetto",
        f'"{original.oggetto}" inviato da "{original.mittente}"',
        f'e destinato all\'utente "{recipient}"',
        "è stato rilevato il seguente errore:",
        errore_esteso,
        f"Identificativo del messaggio: {original.identificativo}",
    ]
    daticert = build_daticert(
        tipo=kind.tipo,
        errore=errore,
        original=original,
        gestore=gestore,
        now=now,
        consegna=recipient,
        errore_esteso=errore_esteso,
    )
    return _receipt(kind, gestore, original, now, paragraphs, daticert, (), recipient)


def build_errore_consegna(
    gestore: Gestore,
    original: Original,
    recipient: str,
    now: datetime,
    *,
    errore: str = "no-dest",
    errore_esteso: str | None = None,
) -> bytes:
    """AVVISO DI MANCATA CONSEGNA (errore-consegna) for ``recipient``."""
    text = errore_esteso or f"5.1.1 - {gestore.name} - indirizzo non valido"
    return _error_notice(_ERRORE, gestore, original, recipient, now, errore, text)


def build_preavviso_errore_consegna(
    gestore: Gestore,
    original: Original,
    recipient: str,
    now: datetime,
    errore_esteso: str | None = None,
) -> bytes:
    """The warning sent when no delivery receipt came within the time limit (12 h in real life)."""
    text = errore_esteso or (
        f"5.4.1 - {gestore.name} - il messaggio non è stato consegnato nelle prime dodici ore"
    )
    return _error_notice(_PREAVVISO, gestore, original, recipient, now, "altro", text)


def build_posta_certificata(gestore: Gestore, original: Original, now: datetime) -> bytes:
    """The transport envelope ``POSTA CERTIFICATA: <subject>`` delivered to the recipients."""
    giorno, ora, zona = _when(now)
    paragraphs = [
        f"Il giorno {giorno} alle ore {ora} ({zona}) il messaggio",
        f'"{original.oggetto}" è stato inviato da "{original.mittente}"',
        "indirizzato a:",
        *original.destinatari,
        "Il messaggio originale è incluso in allegato.",
        f"Identificativo messaggio: {original.identificativo}",
    ]
    daticert = build_daticert(
        tipo=_TRASPORTO.tipo,
        errore="nessuno",
        original=original,
        gestore=gestore,
        now=now,
        ricevuta=original.ricevuta,
    )
    headers = [
        ("Subject", f"{_TRASPORTO.subject_prefix}: {original.oggetto}"),
        *([("X-Riferimento-Message-ID", original.msgid)] if original.msgid else []),
        ("Date", format_datetime(now)),
        ("Reply-To", original.reply_to),
        ("To", ", ".join(original.destinatari)),
        ("X-Trasporto", _TRASPORTO.tipo),
        ("From", f'"Per conto di: {original.mittente}" <{gestore.address}>'),
        ("X-TipoRicevuta", original.ricevuta.value),
        ("Message-ID", f"<{original.identificativo}>"),
    ]
    parts = [
        _alternative(_TRASPORTO, paragraphs),
        _daticert_part(daticert),
        _postacert_part(postacert(original)),
    ]
    return _sign(headers, parts, gestore)
