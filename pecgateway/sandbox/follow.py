"""When an injected message moves the address SDI answers the sandbox's user on.

Real SDI may start writing from another sdiNN, and then expects files there; the gateway learns the
new address only from SDI's message through PEC (``inbound_trust`` judges it) about one of its own
files, or delivering an invoice with its metadata. The sandbox's SDI follows exactly those messages,
so the two never disagree. Pure: the caller says which file names SDI received from the user.
"""

from __future__ import annotations

from collections.abc import Callable

from pecgateway import classify, inbound_trust, pec
from pecgateway.classify import Kind, Node
from pecgateway.errors import MalformedMessage
from pecgateway.filename import NotificationType

__all__ = ["new_sdi_address"]


def new_sdi_address(raw: bytes, received: Callable[[str], bool]) -> tuple[str, str] | None:
    """The sdiNN ``raw`` comes from and what it brings, when it is SDI's message through PEC that
    teaches the gateway that address: a notification about a file SDI received from the user
    (``received(nome_file)``) or an invoice with its MT. None for anything else."""
    try:
        message = pec.parse(raw)
    except MalformedMessage:
        return None
    trust = inbound_trust.assess(raw, message)
    if trust.origin is not inbound_trust.Origin.SDI or trust.sdi_address is None:
        return None
    what = _teaching_content(classify.classify(raw), received)
    return None if what is None else (trust.sdi_address, what)


def _teaching_content(node: Node, received: Callable[[str], bool]) -> str | None:
    found = [n for n in classify.walk(node) if n is not node]
    invoices = [n for n in found if n.kind is Kind.INVOICE]
    notifications = [n.notification for n in found if n.notification is not None]
    if invoices and any(n.type is NotificationType.MT for n in notifications):
        return "a supplier's invoice with its metadata"
    for notification in notifications:
        name = notification.nome_file
        if notification.type is not NotificationType.MT and name and received(name):
            return f"SDI's {notification.type.value} about {name}, a file it received from you"
    return None
