"""Messages kept for a person: quarantined mail and receipts about files we never sent.

Owns how such a message is shown to office staff: its file name (date, time and subject, e.g.
``2026-12-03 1047 POSTA CERTIFICATA Invio File 10000011.eml``), its label (who sent it, the subject,
the date) and the reason it was quarantined, said in words that name the real problem and what to do.
Plans the raw message, ``.reason.txt`` and the inspect JSON; inbound_files writes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from pecgateway import mail, report, sink
from pecgateway.classify import Kind, Node, walk
from pecgateway.errors import MalformedMessage
from pecgateway.inbound_files import Unit, json_bytes
from pecgateway.inbound_trust import Origin, Trust
from pecgateway.log import get_logger
from pecgateway.store import Item

if TYPE_CHECKING:
    from pecgateway.pec import PecMessage

__all__ = [
    "LABEL_MAX",
    "Described",
    "bounded",
    "describe",
    "foreign_receipt",
    "identificativo_conflict",
    "not_from_sdi",
    "partly_filed",
    "plan_quarantine",
    "untrusted_receipt",
    "why_quarantined",
]

_log = get_logger()
_SUBJECT_MAX = 80  # characters of the subject kept in a file name
LABEL_MAX = 200  # characters of a subject or sender kept in a label, a reason or a log line
_NO_SUBJECT = {sink.Language.IT: "senza oggetto", sink.Language.EN: "no subject"}
_INVIO_FILE = re.compile(r"\bInvio File (\d+)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Described:
    """A message as a person recognises it in a mail client."""

    sender: str | None
    subject: str | None
    date: datetime  # the Date header (the sender's local time), else when it was received
    kind: str = "e-mail"  # or "PEC message"

    def label(self) -> str:
        """``PEC message from X, "subject", of 2026-12-03 10:47``: a quarantine entry's ``what``."""
        subject = f'"{bounded(self.subject)}"' if self.subject else "no subject"
        sender = bounded(self.sender) if self.sender else "an unknown sender"
        return f"{self.kind} from {sender}, {subject}, of {self.date:%Y-%m-%d %H:%M}"

    def file_name(self, language: sink.Language, extension: str = ".eml") -> str:
        """``2026-12-03 1047 <subject>.eml``, safe on any file system, length-bounded."""
        words = "".join(" " if _unsafe(ch) else ch for ch in self.subject or "").split()
        subject = " ".join(words)[:_SUBJECT_MAX].rstrip(" .") or _NO_SUBJECT[language]
        return sink.safe_name(f"{self.date:%Y-%m-%d %H%M} {subject}{extension}")


def bounded(text: str, limit: int = LABEL_MAX) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis saying it was cut (a 1 MB Subject must not
    make a 1 MB log line or status entry)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unsafe(ch: str) -> bool:
    return not ch.isprintable() or ch in '/\\:*?"<>|'


def describe(raw: bytes, node: Node | None, received: datetime) -> Described:
    """Sender, subject and date of a raw message; whatever cannot be read is left out."""
    warnings: list[str] = []
    try:
        headers = mail.Headers(mail.parse_bytes(raw))
    except MalformedMessage:
        return Described(None, None, received)
    pec = node.pec if node is not None else None
    addresses = headers.addresses("From", warnings)
    sender = (pec.mittente if pec else None) or (addresses[0][1] if addresses else None)
    kind = "PEC message" if pec is not None and pec.type is not None else "e-mail"
    return Described(sender, headers.text("Subject", warnings), _date(headers) or received, kind)


def _date(headers: mail.Headers) -> datetime | None:
    value = headers.raw("Date")
    try:
        return parsedate_to_datetime(value) if value else None
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def plan_quarantine(unit: Unit, raw: bytes, reason: str, node: Node | None) -> str:
    """Records the message in quarantine and plans it with its reason and inspect JSON."""
    described = describe(raw, node, unit.gw.clock())
    relpath = unit.route(sink.Kind.QUARANTINE, described.file_name(unit.gw.config.inbox_language))
    item_id = unit.gw.store.record_quarantine(
        unit.account.name,
        what=described.label(),
        reason=reason,
        path=unit.shown(relpath),
        at=unit.gw.clock(),
    )
    plan = unit.plan
    plan.add(Item.QUARANTINE, item_id, relpath, raw)
    plan.beside(
        Item.QUARANTINE, item_id, relpath, relpath.name + ".reason.txt", f"{reason}\n".encode()
    )
    facts: dict[str, object] = {"what": described.label(), "reason": reason}
    facts.update(source=str(unit.source), folder=unit.source.folder, uid=unit.source.uid)
    facts["inspect"] = report.to_json(node, relpath.name) if node is not None else None
    plan.beside(Item.QUARANTINE, item_id, relpath, relpath.name + ".json", json_bytes(facts))
    _log.warning(
        "message_quarantined", what=described.label(), reason=reason, path=unit.shown(relpath)
    )
    return "quarantined"


# ---- the reason ---------------------------------------------------------------------------------


def why_quarantined(node: Node, *, from_sdi: bool = False) -> str:
    """What is wrong with a message nothing could be filed from, and what to do about it.

    ``from_sdi``: the message is SDI's through PEC (inbound_trust.py); only then is an unreadable
    attachment called an invoice SDI delivered.
    """
    pec = node.pec
    if node.error:
        return (
            f"the message cannot be read as an e-mail ({node.kind.value}): {node.error}; open the "
            ".eml file with a mail client and ask the sender what it is"
        )
    unknown = [w for w in pec.warnings if w.startswith("unknown X-")] if pec else []
    if unknown:  # field quirk F5: never counted as any receipt; a person must read it
        return (
            f"PEC message of unknown kind, not counted as any receipt: {unknown[0]}; read it in a "
            "mail client and check the state of the invoice it is about by hand"
        )
    sdi = _sdi_delivery(pec) if from_sdi else None
    if sdi is not None:
        broken = _unreadable(node, Kind.MALFORMED, Kind.UNKNOWN)
        if broken is not None:
            return (
                f"SDI delivered invoice {broken.filename or 'an attachment'}{sdi} but it cannot be "
                f"read: {_error(broken)}; ask the supplier to send it again"
            )
    broken = _unreadable(node, Kind.MALFORMED)
    unreadable = (
        f"; its attachment {broken.filename} cannot be read: {_error(broken)}" if broken else ""
    )
    if pec is not None and pec.type is not None:
        return (
            f"PEC message of type {pec.type.value} carrying no receipt, SDI notification or "
            f"invoice{unreadable}; read it in a mail client and deal with it by hand"
        )
    return (
        f"not a PEC receipt, SDI notification or invoice (a plain e-mail){unreadable}; read it in "
        "a mail client: the gateway files only what SDI and the PEC providers send"
    )


def _sdi_delivery(pec: PecMessage | None) -> str | None:
    """`` (IdentificativoSdI n)`` (or "") for a message from SDI; None for any other."""
    found = _INVIO_FILE.search(pec.oggetto or "") if pec is not None else None
    if pec is None or not (pec.sdi_address or found):
        return None
    return f" (IdentificativoSdI {found.group(1)})" if found else ""


def _unreadable(node: Node, *kinds: Kind) -> Node | None:
    """The first file inside the message of one of ``kinds`` (what could not be read)."""
    return next((n for n in walk(node) if n is not node and n.kind in kinds), None)


def _error(node: Node) -> str:
    return node.error or f"not understood (a {node.kind.value} file)"


# ---- messages not trusted, parts not handled (inbound_trust.py) ---------------------------------


def untrusted_receipt(message: PecMessage, trust: Trust) -> str:
    """A receipt-looking message that is not a PEC provider's receipt: it changes nothing."""
    kind = message.type.value if message.type is not None else "receipt"
    why = trust.problem or "it has no X-Ricevuta header"
    return (
        f"looks like a PEC receipt ({kind}) from {bounded(trust.sender or 'an unknown sender')} "
        "but is not "
        f"one: {why}; it changed nothing. A genuine receipt comes signed from a PEC provider: check "
        "the invoice's state with pecgateway status and ask your PEC provider if it looks wrong"
    )


def foreign_receipt(message: PecMessage, mittente: str, file_name: str, address: str) -> str:
    """A PEC receipt about our message whose certified sender is another account: forged."""
    kind = message.type.value if message.type is not None else "receipt"
    return (
        f"a PEC receipt ({kind}) about our {file_name} says in its daticert.xml that the message was "
        f"sent by {bounded(mittente)}, not by this account ({address}): it is not trusted and "
        "changed nothing. Check the invoice's state with pecgateway status and ask your PEC "
        "provider if it looks wrong"
    )


def identificativo_conflict(
    part: str | None, kind: str, identificativo_sdi: str, file_name: str, holder: str
) -> str:
    """SDI's notification about one of our files naming the IdentificativoSdI of another."""
    named = bounded(part) if part else "an unnamed attachment"
    return (
        f"SDI's notification {kind} {named} about {file_name} carries IdentificativoSdI "
        f"{bounded(identificativo_sdi)}, which already belongs to {holder}: it was not applied (two "
        "invoices cannot share one SDI id). Check both invoices with pecgateway status and ask "
        "SDI's help desk which file that id is"
    )


def not_from_sdi(trust: Trust, carried: list[Node]) -> str:
    """A notification or invoice that did not come from SDI through PEC: it changes nothing."""
    because = f": {trust.problem}" if trust.problem is not None else ""
    return (
        f"not delivered by SDI through PEC: {_listed(carried)} attached to {_carrier(trust)} is "
        f"not trusted (nothing was changed or filed){because}; if it is genuine it will also "
        "arrive from SDI"
    )


def partly_filed(unhandled: list[Node], filed: list[str]) -> str:
    """SDI's message whose other parts were filed: which part could not be handled, and why."""
    parts = "; ".join(f"{n.filename or 'an unnamed attachment'}: {_error(n)}" for n in unhandled)
    return (
        f"SDI's message was filed ({' and '.join(filed)}) except a part that cannot be handled "
        f"({parts}); the whole message is kept here so nothing is lost: read that part in a mail "
        "client and ask the sender or SDI's help desk what it is"
    )


def _listed(carried: list[Node]) -> str:
    names = [_carried(n) for n in carried[:3]]
    more = f" and {len(carried) - 3} more" if len(carried) > 3 else ""
    return ", ".join(names) + more


def _carried(node: Node) -> str:
    name = node.filename or "unnamed"
    if node.notification is not None:
        return f"the SDI notification {node.notification.type.value} {name}"
    return f"the invoice {name}"


def _carrier(trust: Trust) -> str:
    sender = bounded(trust.sender or "an unknown sender")
    if trust.origin is Origin.PEC:
        return f"a PEC message from {sender}, who is not SDI (sdiNN@pec.fatturapa.it)"
    if trust.problem is not None:
        return f"a PEC-looking message from {sender}"
    return f"an ordinary e-mail from {sender}"
