"""What SDI's message carries, part by part: notifications, invoices, their MT, and anything the
gateway cannot handle (which sends the raw message to quarantine too, so nothing is lost).

Sorted by top-level attachment of the original message; a zip is looked into (an AT, a lot).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pecgateway import filename, sink
from pecgateway.classify import Kind, Node, walk
from pecgateway.inbound_invoice import is_mt

__all__ = ["Parts", "notification_name", "sort_parts"]

_UNNAMED = re.compile(r"part-\d+(\.[A-Za-z0-9]+)?")  # pec.py's name for an attachment without one


@dataclass(slots=True)
class Parts:
    """What SDI's message carries, top-level attachment by attachment."""

    notifications: list[Node] = field(default_factory=list)
    invoices: list[Node] = field(default_factory=list)
    metadata: list[Node] = field(default_factory=list)  # MT files, filed with their invoice
    unhandled: list[Node] = field(default_factory=list)


def sort_parts(node: Node) -> Parts:
    """Notifications, invoices, MTs and what none of them is. A zip holding a notification (an
    AT: the attestation plus our own invoice) counts as its notifications; a zip of invoices (a
    lot) as its invoices; anything else in a zip is unhandled."""
    parts = Parts()
    for child in node.contents:
        if child.kind is Kind.ARCHIVE:
            _sort_archive(child, parts)
        elif child.notification is not None and child.kind is Kind.NOTIFICATION:
            (parts.metadata if is_mt(child.notification) else parts.notifications).append(child)
        elif child.kind is Kind.INVOICE:
            parts.invoices.append(child)
        else:
            parts.unhandled.append(child)
    if parts.metadata and not parts.invoices:  # an MT alone is no invoice (BL-35)
        parts.unhandled += parts.metadata
    return parts


def _sort_archive(archive: Node, parts: Parts) -> None:
    entries = [n for n in walk(archive) if n is not archive and n.kind is not Kind.ARCHIVE]
    notices = [n for n in entries if n.notification is not None and not is_mt(n.notification)]
    invoices = [n for n in entries if n.kind is Kind.INVOICE]
    if not notices and not invoices:
        parts.unhandled.append(archive)
        return
    parts.notifications += notices
    if not notices:
        parts.invoices += invoices
    known = [*notices, *invoices]
    parts.unhandled += [n for n in entries if all(n is not k for k in known)]


def notification_name(node: Node) -> str:
    """The file name a notification is filed under: its attachment's name, or, when the attachment
    had none, ``<stem>_<TT>_001.xml`` from its NomeFile and type (as SDI names them)."""
    notification = node.notification
    given = node.filename
    if notification is None or (given and not _UNNAMED.fullmatch(given)):
        return given or "unnamed"
    nome_file = (notification.nome_file or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem = filename.invoice_stem(nome_file) if nome_file else "unknown"
    return sink.safe_name(f"{stem}_{notification.type.value}_001.xml")
