"""Whom an inbound message is believed to come from: a PEC provider's receipt, SDI through PEC, or
nobody we trust. Only a trusted origin may change an invoice's state, file a supplier's invoice or
teach the SDI address; everything else is quarantined (inbound.py decides, this module judges).

The checks are STRUCTURAL: a PEC message is an S/MIME ``multipart/signed`` whose signature part is a
CMS SignedData, with exactly one of ``X-Ricevuta`` / ``X-Trasporto`` and, when a ``daticert.xml`` is
there, a ``tipo`` that agrees with it. The provider's signature itself is NOT verified against the
PEC providers' certificates: the AgID list of trusted PEC providers is not available offline (a
later issue). A message built by hand to look like PEC passes; an ordinary e-mail never does.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from email.message import Message

from pecgateway import mail, p7m
from pecgateway.errors import MalformedMessage
from pecgateway.pec import PecMessage, PecType

__all__ = ["SIGNATURE_NOT_VERIFIED", "Origin", "Trust", "assess"]

SIGNATURE_NOT_VERIFIED = (
    "structural checks only: the PEC provider's S/MIME signature is not verified against the "
    "providers' certificates (the AgID trusted list is not available offline)"
)

_SDI_ADDRESS = re.compile(r"sdi\d{1,3}@pec\.fatturapa\.it", re.IGNORECASE)
_PER_CONTO_DI = re.compile(r"per\s+conto\s+di\s*:\s*<?([^\s<>\"']+@[^\s<>\"']+)", re.IGNORECASE)
_ANOMALY = (
    "the PEC provider marked it as an anomaly (X-Trasporto: errore), so the message inside was "
    "not sent as certified PEC"
)
_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})


class Origin(enum.Enum):
    """Who a message is believed to come from."""

    RECEIPT = "pec-receipt"  # a PEC provider's receipt: X-Ricevuta, signed
    SDI = "sdi"  # SDI's message: a signed transport envelope sent by sdiNN@pec.fatturapa.it
    PEC = "pec"  # a signed transport envelope from anyone else (a supplier writing directly)
    UNTRUSTED = "untrusted"  # a plain e-mail, an anomaly envelope, PEC that is not PEC-shaped


@dataclass(frozen=True, slots=True)
class Trust:
    """The judgement on one message.

    ``sender``: the certified sender of a transport envelope (daticert ``mittente``, else the
    provider's ``"Per conto di: X"``), else the From address. ``sdi_address``: set for SDI only.
    ``problem``: why a message that claims to be PEC is not believed (None when it is, or when it
    never claimed to be PEC).
    """

    origin: Origin
    sender: str | None = None
    sdi_address: str | None = None
    problem: str | None = None


def assess(raw: bytes, message: PecMessage | None) -> Trust:
    """Judge ``raw`` (already parsed by ``pec.parse`` into ``message``); never raises."""
    try:
        parsed = mail.parse_bytes(raw)
    except MalformedMessage:
        return Trust(Origin.UNTRUSTED)
    headers = mail.Headers(parsed)
    certified = _certified_sender(headers, message)
    sdi = message.sdi_address if message is not None else None
    sender = certified or _from(headers)  # never Reply-To: the sender writes it
    ricevuta, trasporto = headers.raw("X-Ricevuta"), headers.raw("X-Trasporto")
    if message is None or (ricevuta is None and trasporto is None):
        return Trust(Origin.UNTRUSTED, sender)
    problem = _pec_problem(parsed, message, ricevuta, trasporto)
    if problem is not None:
        return Trust(Origin.UNTRUSTED, sender, problem=problem)
    if ricevuta is not None:
        return Trust(Origin.RECEIPT, sender)
    if message.type is not PecType.POSTA_CERTIFICATA:  # X-Trasporto: errore
        return Trust(Origin.UNTRUSTED, sender, problem=_ANOMALY)
    address = _sdi_sender(certified, sdi)
    if address is None:
        return Trust(Origin.PEC, sender)
    if message.postacert is None:
        problem = "it is a transport envelope without the original message (postacert.eml)"
        return Trust(Origin.UNTRUSTED, sender, problem=problem)
    return Trust(Origin.SDI, address, sdi_address=address)


def _sdi_sender(certified: str | None, sdi: str | None) -> str | None:
    """SDI's address when SDI sent the message: the certified sender when the provider wrote one
    (Reply-To and the inner From are the sender's own words and never overrule it), else the
    address ``pec.parse`` found in Reply-To or the inner From."""
    if certified is not None:
        return certified.lower() if _SDI_ADDRESS.fullmatch(certified) else None
    return sdi.lower() if sdi else None


def _pec_problem(
    parsed: Message, message: PecMessage, ricevuta: str | None, trasporto: str | None
) -> str | None:
    """Why a message with PEC headers is not PEC-shaped; None when it is."""
    if ricevuta is not None and trasporto is not None:
        return "it carries both X-Ricevuta and X-Trasporto (a PEC message has exactly one)"
    declared = (ricevuta or trasporto or "").strip().lower()
    kind = message.type
    if kind is None or declared != ("errore" if kind is PecType.ANOMALIA else kind.value):
        return f"its PEC header value {declared!r} is not a known PEC message kind"
    tipo = message.daticert.tipo if message.daticert is not None else None
    if tipo is not None and tipo.strip().lower() not in (declared, kind.value):
        return f"its daticert.xml says tipo {tipo!r} but its header says {declared!r}"
    return _signature_problem(parsed)


def _signature_problem(parsed: Message) -> str | None:
    """Why the message is not an S/MIME signed message as PEC providers write them."""
    if mail.content_type(parsed) != "multipart/signed":
        return "it is not signed by a PEC provider (not an S/MIME multipart/signed message)"
    parts = mail.children(parsed)
    signatures = [p for p in parts[1:] if mail.content_type(p) in _SIGNATURE_TYPES]
    if len(parts) != 2 or len(signatures) != 1:
        return "its S/MIME structure is not a signed content plus one signature part (smime.p7s)"
    warnings: list[str] = []
    if not _parses_as_signed_data(mail.payload_bytes(signatures[0], warnings)):
        return "its S/MIME signature part (smime.p7s) is not a CMS signature"
    return None


def _parses_as_signed_data(data: bytes) -> bool:
    """Whether ``data`` parses as a CMS SignedData (with p7m's lenient asn1crypto specs), not only
    starts with the signedData OID as a sniff would accept: its version, digest algorithms,
    encapsulated content type and signer infos are read. Never raises."""
    if not data.startswith(b"\x30") or len(data) > p7m.MAX_INPUT_BYTES:
        return False
    try:
        info = p7m._ContentInfo.load(data, strict=False)
        if info["content_type"].native != "signed_data":
            return False
        signed_data = info["content"].parse(p7m._SignedData)
        signed_data["version"].native  # noqa: B018 -- asn1crypto parses lazily: read to check
        signed_data["digest_algorithms"].native  # noqa: B018
        signed_data["encap_content_info"]["content_type"].native  # noqa: B018
        signed_data["signer_infos"].native  # noqa: B018
    except p7m._ASN1_ERRORS:
        return False
    return True


def _certified_sender(headers: mail.Headers, message: PecMessage | None) -> str | None:
    """The sender as the PEC provider certifies it: daticert mittente, else "Per conto di:"."""
    daticert = message.daticert if message is not None else None
    if daticert is not None and daticert.mittente:
        return daticert.mittente.strip().strip("<>")
    warnings: list[str] = []
    for name, _ in headers.addresses("From", warnings):
        found = _PER_CONTO_DI.search(name)
        if found:
            return found.group(1)
    return None


def _from(headers: mail.Headers) -> str | None:
    found = headers.addresses("From", [])
    return found[0][1] if found else None
