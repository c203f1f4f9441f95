"""SDI file names: invoice files (``IT01234567890_00001.xml.p7m``) and notification files.

Owns the naming rules of the SDI specification: strict for the names we send, lenient for the names
we receive. Pure and total: every function returns a value (``None`` when a name does not match).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = [
    "InvoiceName",
    "NotificationName",
    "NotificationType",
    "invoice_stem",
    "parse_invoice_name",
    "parse_notification_name",
    "same_invoice_file",
]

_STRICT = re.compile(
    r"(?P<country>[A-Z]{2})(?P<id_codice>[A-Za-z0-9]{2,28})_(?P<progressivo>[A-Za-z0-9]{1,5})"
    r"\.(?P<extension>xml|xml\.p7m|zip)"
)
_LENIENT = re.compile(
    r"(?P<country>[A-Za-z]{2})(?P<id_codice>[A-Za-z0-9]{2,28})_(?P<progressivo>[A-Za-z0-9]{1,5})"
    r"\.(?P<extension>xml|zip|p7m|pk7|xml\.p7m|xml\.pk7)",
    re.IGNORECASE,
)
_NOTIFICATION = re.compile(
    r"(?P<stem>.+)_(?P<type>RC|NS|MC|NE|DT|AT|EC|SE|MT)_(?P<number>[A-Za-z0-9]{1,3})"
    r"\.(?P<extension>xml|zip)",
    re.IGNORECASE | re.DOTALL,
)
_SIGNATURE_SUFFIX = re.compile(r"\.(p7m|pk7)$", re.IGNORECASE)
_CONTENT_SUFFIX = re.compile(r"\.(xml|zip)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class InvoiceName:
    """A parsed invoice file name; ``extension`` is lowercase (``xml``, ``xml.p7m``, ``zip`` ...)."""

    country: str
    id_codice: str
    progressivo: str
    extension: str

    @property
    def transmitter(self) -> str:
        """IdPaese + IdCodice of the transmitter, e.g. ``IT01234567890``."""
        return self.country + self.id_codice


class NotificationType(enum.Enum):
    """The ``_TT_`` code of an SDI message file name."""

    RC = "RC"
    NS = "NS"
    MC = "MC"
    NE = "NE"
    DT = "DT"
    AT = "AT"
    EC = "EC"
    SE = "SE"
    MT = "MT"


@dataclass(frozen=True, slots=True)
class NotificationName:
    """A parsed notification file name: ``<invoice stem>_<TT>_<nnn>.xml``."""

    invoice_stem: str
    type: NotificationType
    number: str
    extension: str


def parse_invoice_name(name: str, *, strict: bool) -> InvoiceName | None:
    """Parse an invoice file name; ``strict`` for what we send, lenient for what we receive."""
    match = (_STRICT if strict else _LENIENT).fullmatch(name)
    if match is None:
        return None
    country = match["country"]
    if strict and country == "IT" and not 11 <= len(match["id_codice"]) <= 16:
        return None
    return InvoiceName(
        country=country,
        id_codice=match["id_codice"],
        progressivo=match["progressivo"],
        extension=match["extension"].lower(),
    )


def parse_notification_name(name: str) -> NotificationName | None:
    """Parse ``<stem>_TT_nnn.xml|.zip`` in any case; the stem need not be a valid invoice name."""
    match = _NOTIFICATION.fullmatch(name)
    if match is None:
        return None
    return NotificationName(
        invoice_stem=match["stem"],
        type=NotificationType(match["type"].upper()),
        number=match["number"],
        extension=match["extension"].lower(),
    )


def invoice_stem(name: str) -> str:
    """The name without ``.xml``, ``.xml.p7m``, ``.p7m``, ``.pk7`` or ``.zip`` (any case)."""
    stem = name
    while (shorter := _SIGNATURE_SUFFIX.sub("", stem)) != stem and shorter:
        stem = shorter
    shorter = _CONTENT_SUFFIX.sub("", stem)
    return shorter or stem


def _content_kind(name: str) -> str:
    without_signature = name
    while (shorter := _SIGNATURE_SUFFIX.sub("", without_signature)) != without_signature:
        without_signature = shorter
    match = _CONTENT_SUFFIX.search(without_signature)
    return match[1].lower() if match else ""


def same_invoice_file(a: str, b: str) -> bool:
    """Whether two names designate the same file as SDI's ``NomeFile`` does.

    Signature suffixes (``.p7m``) and letter case are ignored; ``.xml`` and ``.zip`` differ unless
    one of the names carries no content extension at all (``IT..._00001.p7m``).
    """
    if invoice_stem(a).casefold() != invoice_stem(b).casefold():
        return False
    kind_a, kind_b = _content_kind(a), _content_kind(b)
    return kind_a == kind_b or not kind_a or not kind_b
