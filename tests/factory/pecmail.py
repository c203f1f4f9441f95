"""Test builders of PEC messages (receipts, envelopes, anomalies) and plain mail, with the stdlib.

The structure follows real provider messages: multipart/signed -> multipart/mixed ->
(multipart/alternative text+html, daticert.xml inline base64, postacert.eml message/rfc822 inline
7bit, smime.p7s). Test-only: the sandbox builds the product's own envelopes separately.
"""

from __future__ import annotations

import base64
import io
import quopri
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from typing import Any

from lxml import etree

__all__ = [
    "PROVIDER",
    "SDI",
    "UNSIGNED_SIGNED_DATA",
    "Part",
    "build_accettazione",
    "build_anomalia",
    "build_avvenuta_consegna",
    "build_daticert",
    "build_envelope",
    "build_errore_consegna",
    "build_non_accettazione",
    "build_original",
    "build_plain_mail",
    "build_preavviso_errore_consegna",
    "build_presa_in_carico",
    "build_rilevazione_virus",
    "build_sdi_envelope",
    "encoded_subject",
]

PROVIDER = "posta-certificata@pec.provider.example"
SDI = "sdi07@pec.fatturapa.it"
OURS = "fatture@pec.example.it"
OUR_MESSAGE_ID = "<20240506100000.abcdef@pec.example.it>"
IDENTIFICATIVO = "opec210.20240506100000.12345.01.1.1@pec.provider.example"
_OUT = policy.compat32.clone(linesep="\r\n", max_line_length=0)


@dataclass(frozen=True, slots=True)
class Part:
    """An attachment to put in a built message; ``cte`` None means no CTE header at all."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    cte: str | None = "base64"


# A CMS SignedData that parses (version 1, no digest algorithms, id-data, no signers) but signs
# nothing: PEC-shaped for the gateway's structural checks, forged for anyone who verifies it.
UNSIGNED_SIGNED_DATA = bytes.fromhex(
    "3023"  # ContentInfo
    "06092a864886f70d010702"  # signedData
    "a016"
    "3014"
    "020101"
    "3100"  # [0] SignedData: version 1, digestAlgorithms {}
    "300b06092a864886f70d010701"  # encapContentInfo: id-data, detached
    "3100"  # signerInfos {}
)


def _flatten(message: Message) -> bytes:
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=_OUT).flatten(message)
    return buffer.getvalue()


def _leaf(content_type: str, payload: str, cte: str | None, **headers: str) -> Message:
    part = Message()
    part["Content-Type"] = content_type
    for name, value in headers.items():
        part[name.replace("_", "-")] = value
    if cte is not None:
        part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def _multipart(subtype: str, parts: Sequence[Message], **params: str) -> Message:
    message = Message()
    extra = "".join(f'; {k}="{v}"' for k, v in params.items())
    message["Content-Type"] = f"multipart/{subtype}{extra}"
    message.set_payload(list(parts))
    return message


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def _attachment(part: Part) -> Message:
    if part.cte == "base64":
        payload = _b64(part.data)
    elif part.cte == "quoted-printable":
        payload = quopri.encodestring(part.data).decode("ascii")
    else:
        payload = part.data.decode("utf-8", "surrogateescape")
    name = part.filename if re.fullmatch(r"[\w.-]+", part.filename) else f'"{part.filename}"'
    return _leaf(
        f"{part.content_type}; name={name}",
        payload,
        part.cte,
        Content_Disposition=f"attachment; filename={name}",
    )


def encoded_subject(text: str, charset: str = "utf-8") -> str:
    """An RFC 2047 encoded Subject value."""
    return Header(text, charset).encode()


def build_daticert(
    tipo: str,
    *,
    errore: str = "nessuno",
    mittente: str = OURS,
    destinatari: Iterable[str] = (SDI,),
    risposte: str | None = None,
    oggetto: str | None = "IT01234567890_00001.xml",
    gestore: str = "PROVIDER PEC S.p.A.",
    identificativo: str = IDENTIFICATIVO,
    msgid: str | None = OUR_MESSAGE_ID,
    ricevuta: str | None = None,
    consegna: str | None = None,
    errore_esteso: str | None = None,
) -> bytes:
    """A daticert.xml as providers write it (root postacert, no namespace)."""
    root = etree.Element("postacert", tipo=tipo, errore=errore)
    head = etree.SubElement(root, "intestazione")
    etree.SubElement(head, "mittente").text = mittente
    for address in destinatari:
        etree.SubElement(head, "destinatari", tipo="certificato").text = address
    etree.SubElement(head, "risposte").text = risposte or mittente
    if oggetto is not None:
        etree.SubElement(head, "oggetto").text = oggetto
    dati = etree.SubElement(root, "dati")
    etree.SubElement(dati, "gestore-emittente").text = gestore
    data = etree.SubElement(dati, "data", zona="+0200")
    etree.SubElement(data, "giorno").text = "06/05/2024"
    etree.SubElement(data, "ora").text = "10:00:01"
    etree.SubElement(dati, "identificativo").text = identificativo
    if msgid is not None:
        etree.SubElement(dati, "msgid").text = msgid
    if ricevuta is not None:
        etree.SubElement(dati, "ricevuta", tipo=ricevuta)
    if consegna is not None:
        etree.SubElement(dati, "consegna").text = consegna
    if errore_esteso is not None:
        etree.SubElement(dati, "errore-esteso").text = errore_esteso
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def build_original(
    *,
    subject: str = "IT01234567890_00001.xml",
    sender: str = OURS,
    to: str = SDI,
    message_id: str = f"<{IDENTIFICATIVO}>",
    riferimento: str | None = OUR_MESSAGE_ID,
    attachments: Sequence[Part] = (),
    text: str = "Invio fattura.\r\n",
) -> bytes:
    """The original message, as embedded in postacert.eml (plain text body + attachments)."""
    body = _leaf('text/plain; charset="utf-8"', text, "7bit")
    message = _multipart("mixed", [body, *(_attachment(p) for p in attachments)])
    for name, value in (("From", sender), ("To", to), ("Subject", subject)):
        message[name] = value
    message["Message-ID"] = message_id
    if riferimento is not None:
        message["X-Riferimento-Message-ID"] = riferimento
    message["MIME-Version"] = "1.0"
    return _flatten(message)


def _postacert(data: bytes, style: str) -> Message:
    """postacert.eml as ``rfc822`` (7bit), ``rfc822-8bit``, ``rfc822-binary``, ``rfc822-base64``,
    ``octet-stream`` (base64), ``octet-stream-7bit``, or message/rfc822 with any other CTE value."""
    if style == "rfc822-base64":
        return _leaf(
            'message/rfc822; name="postacert.eml"',
            _b64(data),
            "base64",
            Content_Disposition='inline; filename="postacert.eml"',
        )
    if style == "octet-stream-7bit":
        return _leaf(
            'application/octet-stream; name="postacert.eml"',
            data.decode("utf-8", "surrogateescape"),
            "7bit",
        )
    if style == "octet-stream":
        return _leaf(
            'application/octet-stream; name="postacert.eml"',
            _b64(data),
            "base64",
            Content_Disposition='attachment; filename="postacert.eml"',
        )
    cte = {"rfc822": "7bit", "rfc822-8bit": "8bit", "rfc822-binary": "binary"}.get(style, style)
    part = Message()
    part["Content-Type"] = 'message/rfc822; name="postacert.eml"'
    part["Content-Disposition"] = 'inline; filename="postacert.eml"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload([message_from_bytes(data)])
    return part


def build_envelope(
    *,
    subject: str,
    x_ricevuta: str | None = None,
    x_trasporto: str | None = None,
    sender: str = PROVIDER,
    reply_to: str | None = None,
    to: str = OURS,
    message_id: str = "<opec210.20240506100001.12345.01.1.2@pec.provider.example>",
    riferimento: str | None = OUR_MESSAGE_ID,
    daticert: bytes | None = None,
    postacert: bytes | None = None,
    postacert_style: str = "rfc822",
    extra_parts: Sequence[Part] = (),
    text: str = "Messaggio di posta certificata\r\n",
) -> bytes:
    """A provider message: multipart/signed around multipart/mixed, as in section 6.2 of the spec."""
    alternative = _multipart(
        "alternative",
        [
            _leaf('text/plain; charset="iso-8859-1"', text, "quoted-printable"),
            _leaf('text/html; charset="iso-8859-1"', f"<html><body>{text}</body></html>", "7bit"),
        ],
    )
    parts = [alternative]
    if daticert is not None:
        parts.append(
            _leaf(
                'application/xml; name="daticert.xml"',
                _b64(daticert),
                "base64",
                Content_Disposition='inline; filename="daticert.xml"',
            )
        )
    if postacert is not None:
        parts.append(_postacert(postacert, postacert_style))
    parts += [_attachment(p) for p in extra_parts]
    signature = _leaf(
        'application/x-pkcs7-signature; name="smime.p7s"',
        _b64(UNSIGNED_SIGNED_DATA),
        "base64",
        Content_Disposition='attachment; filename="smime.p7s"',
    )
    envelope = _multipart(
        "signed",
        [_multipart("mixed", parts), signature],
        protocol="application/x-pkcs7-signature",
        micalg="sha1",
    )
    headers = [("Subject", subject), ("X-Riferimento-Message-ID", riferimento)]
    headers += [("Reply-To", reply_to), ("To", to), ("X-Ricevuta", x_ricevuta)]
    headers += [("X-Trasporto", x_trasporto), ("From", sender), ("Message-ID", message_id)]
    for name, value in headers:
        if value is not None:
            envelope[name] = value
    envelope["MIME-Version"] = "1.0"
    return _flatten(envelope)


def _receipt(
    tipo: str,
    prefix: str,
    *,
    oggetto: str = "IT01234567890_00001.xml",
    subject: str | None = None,
    with_daticert: bool = True,
    errore: str = "nessuno",
    errore_esteso: str | None = None,
    consegna: str | None = None,
    ricevuta: str | None = None,
    x_ricevuta: str | None = None,
    mittente: str = OURS,
    **envelope: Any,
) -> bytes:
    daticert = build_daticert(
        tipo,
        mittente=mittente,
        oggetto=oggetto,
        errore=errore,
        errore_esteso=errore_esteso,
        consegna=consegna,
        ricevuta=ricevuta,
    )
    return build_envelope(
        subject=subject if subject is not None else f"{prefix}{oggetto}",
        x_ricevuta=x_ricevuta if x_ricevuta is not None else tipo,
        daticert=daticert if with_daticert else None,
        **envelope,
    )


def build_accettazione(**kw: Any) -> bytes:
    return _receipt("accettazione", "ACCETTAZIONE: ", **kw)


def build_non_accettazione(**kw: Any) -> bytes:
    kw.setdefault("errore", "altro")
    kw.setdefault("errore_esteso", "Messaggio non accettato: dimensione eccessiva")
    return _receipt("non-accettazione", "AVVISO DI NON ACCETTAZIONE: ", **kw)


def build_presa_in_carico(**kw: Any) -> bytes:
    return _receipt("presa-in-carico", "PRESA IN CARICO: ", **kw)


def build_avvenuta_consegna(ricevuta: str = "completa", **kw: Any) -> bytes:
    """Delivery receipt; ``completa`` embeds the original, ``breve`` too, ``sintetica`` does not."""
    kw.setdefault("consegna", SDI)
    if ricevuta != "sintetica":
        kw.setdefault("postacert", build_original(attachments=[_invoice_part()]))
    return _receipt("avvenuta-consegna", "CONSEGNA: ", ricevuta=ricevuta, **kw)


def build_errore_consegna(**kw: Any) -> bytes:
    kw.setdefault("errore", "no-dest")
    kw.setdefault("errore_esteso", "5.1.1 - PROVIDER PEC - indirizzo non valido")
    kw.setdefault("consegna", SDI)
    return _receipt("errore-consegna", "AVVISO DI MANCATA CONSEGNA: ", **kw)


def build_preavviso_errore_consegna(**kw: Any) -> bytes:
    kw.setdefault("errore", "altro")
    kw.setdefault(
        "errore_esteso",
        "4.4.7 - PROVIDER PEC - il messaggio non e' stato consegnato nelle prime dodici ore",
    )
    kw.setdefault("consegna", SDI)
    prefix = "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: "
    return _receipt("preavviso-errore-consegna", prefix, **kw)


def build_rilevazione_virus(**kw: Any) -> bytes:
    kw.setdefault("errore", "virus")
    return _receipt("rilevazione-virus", "PROBLEMA DI SICUREZZA: ", **kw)


def _invoice_part(name: str = "IT01234567890_00001.xml") -> Part:
    return Part(name, b'<?xml version="1.0"?><FatturaElettronica versione="FPR12"/>', "text/xml")


def build_sdi_envelope(
    attachments: Sequence[Part],
    *,
    sdi: str = SDI,
    inner_subject: str = "Ricevuta di consegna 6782414",
    with_daticert: bool = True,
    postacert_style: str = "rfc822",
    reply_to: str | None = None,
    sender: str | None = None,
    riferimento: str = "<5168561142842364.1542124052746@pec.fatturapa.it>",
) -> bytes:
    """SDI's message as the recipient's provider delivers it: a posta-certificata transport envelope."""
    inner_id = "<opec288.20240506100100.1.1.1.1@pcert.sogei.it>"
    original = build_original(
        subject=inner_subject,
        sender=sdi,
        to=OURS,
        message_id=inner_id,
        riferimento=riferimento,
        attachments=attachments,
        text="Il file e' allegato.\r\n",
    )
    daticert = build_daticert(
        "posta-certificata",
        mittente=sdi,
        destinatari=[OURS],
        oggetto=inner_subject,
        gestore="Sogei SpA",
        identificativo=inner_id.strip("<>"),
        msgid=riferimento,
        ricevuta="breve",
    )
    return build_envelope(
        subject=f"POSTA CERTIFICATA: {inner_subject}",
        x_trasporto="posta-certificata",
        sender=sender or f'"Per conto di: {sdi}" <posta-certificata@pcert.sogei.it>',
        reply_to=sdi if reply_to is None else reply_to,
        message_id=inner_id,
        riferimento=riferimento,
        daticert=daticert if with_daticert else None,
        postacert=original,
        postacert_style=postacert_style,
    )


def build_anomalia(original: bytes | None = None) -> bytes:
    """A non-PEC message wrapped by the recipient's provider (X-Trasporto: errore)."""
    inner = original or build_plain_mail()
    return build_envelope(
        subject="ANOMALIA MESSAGGIO: Offerta speciale",
        x_trasporto="errore",
        sender='"Per conto di: someone@example.com" <posta-certificata@pec.provider.example>',
        reply_to="someone@example.com",
        riferimento="<plain.1@example.com>",
        postacert=inner,
    )


def build_plain_mail(
    *,
    subject: str = "Offerta speciale",
    sender: str = "Someone <someone@example.com>",
    attachments: Sequence[Part] = (),
    text: str = "Buongiorno,\r\nin allegato.\r\n",
    message_id: str = "<plain.1@example.com>",
) -> bytes:
    """An ordinary e-mail with no PEC headers and no daticert.xml."""
    body = _leaf('text/plain; charset="utf-8"', text, "7bit")
    message = _multipart("mixed", [body, *(_attachment(p) for p in attachments)])
    message["From"] = sender
    message["To"] = OURS
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message["MIME-Version"] = "1.0"
    return _flatten(message)
