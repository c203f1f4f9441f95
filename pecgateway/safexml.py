"""Safe XML parsing for everything pecgateway reads: no DTD, no entities, no network, ever.

Owns the lxml parser settings. Refuses DOCTYPE declarations outright (billion laughs, XXE), so the
rest of the core can parse untrusted bytes without thinking about it. Pure: bytes in, trees out.
"""

from __future__ import annotations

import re

from lxml import etree

from pecgateway.errors import MalformedMessage

__all__ = ["MAX_XML_BYTES", "local_name", "parse", "parse_recovering"]

MAX_XML_BYTES = 64 * 1024 * 1024

_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)


def _parser(*, recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        recover=recover,
    )


def _refuse_dtd(data: bytes) -> None:
    if len(data) > MAX_XML_BYTES:
        raise MalformedMessage(f"XML document larger than {MAX_XML_BYTES} bytes")
    head = data[:4096]
    if _DOCTYPE.search(head) or _ENTITY.search(data):
        raise MalformedMessage(
            "XML with a DOCTYPE or ENTITY declaration is refused (DTDs and entities are never loaded)"
        )


def parse(data: bytes) -> etree._Element:
    """Parse strictly; raise MalformedMessage with line and column on any error."""
    _refuse_dtd(data)
    try:
        root = etree.fromstring(data, parser=_parser(recover=False))
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not well-formed XML: {exc.msg} (line {exc.lineno})") from exc
    return root


def parse_recovering(data: bytes) -> etree._Element:
    """Parse with libxml2's recovery (bad namespace URIs, stray bytes); MalformedMessage if no root."""
    _refuse_dtd(data)
    try:
        root = etree.fromstring(data, parser=_parser(recover=True))
    except etree.XMLSyntaxError as exc:
        raise MalformedMessage(f"not parseable as XML even with recovery: {exc}") from exc
    if root is None:
        raise MalformedMessage("not parseable as XML even with recovery: no root element")
    return root


def local_name(element: etree._Element) -> str:
    """The element's name without namespace (``{ns}RicevutaConsegna`` -> ``RicevutaConsegna``)."""
    tag = element.tag
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]
