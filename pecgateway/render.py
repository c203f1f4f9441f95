"""A FatturaPA invoice as HTML for people, through the official stylesheets (XSLT, lxml).

Owns the transformation only: the stylesheet is trusted (installed, SHA-256 pinned, by `schema`),
the invoice is not. The XSLT may not read or write files, nor touch the network; the result is a
complete UTF-8 HTML document. Callers write it as ``<name>.html`` beside the invoice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

from lxml import etree

from pecgateway import invoice, safexml, schema
from pecgateway.errors import ConfigError, MalformedMessage

__all__ = ["MAX_RENDER_BYTES", "render_html", "stylesheet_for_invoice"]

# SDI refuses invoice files over 5 MB (code 00003); leave room for what a supplier's SDI hands us.
MAX_RENDER_BYTES = 8 * 1024 * 1024

_ACCESS_REFUSED = re.compile(
    r"rights for .* denied|(file|network) (read|write) for .* refused", re.IGNORECASE
)
_INSTALL_HINT = (
    "install the official stylesheets again with `pecgateway schemas install --from DIR`"
)


def _compile(stylesheet: Path) -> etree.XSLT:
    """The stylesheet compiled with every file and network access denied; ConfigError if unusable."""
    try:
        tree = safexml.parse(stylesheet.read_bytes())
        return etree.XSLT(tree, access_control=etree.XSLTAccessControl.DENY_ALL)
    except OSError as exc:
        raise ConfigError(
            f"{stylesheet}: cannot read the stylesheet ({exc.strerror}); {_INSTALL_HINT}"
        ) from exc
    except (MalformedMessage, etree.XSLTParseError) as exc:
        raise ConfigError(
            f"{stylesheet}: not a usable XSLT stylesheet ({exc}); {_INSTALL_HINT}"
        ) from exc


def _invoice_tree(xml: bytes) -> etree._Element:
    """The invoice parsed strictly after BOM/encoding repair; MalformedMessage when it is not one."""
    if len(xml) > MAX_RENDER_BYTES:
        raise MalformedMessage(
            f"invoice of {len(xml)} bytes is larger than {MAX_RENDER_BYTES} bytes: not rendered; "
            "open the XML file itself"
        )
    text, _ = invoice.decode_text(xml)
    root = safexml.parse(text)
    if not invoice.is_invoice_root(safexml.local_name(root)):
        raise MalformedMessage(
            f"not a FatturaPA invoice (root element {safexml.local_name(root) or '?'}): not rendered"
        )
    return root


def _transform(
    transform: etree.XSLT, root: etree._Element, stylesheet: Path
) -> etree._XSLTResultTree:
    try:
        return transform(root)
    except etree.XSLTApplyError as exc:
        messages = [entry.message for entry in exc.error_log] or [str(exc)]
        if any(_ACCESS_REFUSED.search(message) for message in messages):
            raise ConfigError(
                f"{stylesheet}: the stylesheet tried to read or write files or the network, which is "
                f"refused ({messages[-1]}); {_INSTALL_HINT}"
            ) from exc
        raise MalformedMessage(
            f"the invoice cannot be rendered with {stylesheet.name} ({messages[-1]}); "
            "open the XML file itself"
        ) from exc


def _declare_utf8(html: etree._Element) -> None:
    """Make the document say what it is: one ``<meta charset="UTF-8">`` first in ``<head>``."""
    head = next((child for child in html if safexml.local_name(child).lower() == "head"), None)
    if head is None:
        head = etree.Element("head")
        html.insert(0, head)
    for meta in [child for child in head if safexml.local_name(child).lower() == "meta"]:
        if (
            meta.get("charset") is not None
            or (meta.get("http-equiv") or "").lower() == "content-type"
        ):
            head.remove(meta)
    head.insert(0, etree.Element("meta", charset="UTF-8"))


def render_html(xml: bytes, stylesheet: Path) -> bytes:
    """The invoice ``xml`` rendered with ``stylesheet``: a complete HTML document, UTF-8 encoded.

    Raises MalformedMessage when the invoice is the problem (larger than MAX_RENDER_BYTES, not
    decodable, not well-formed, a DOCTYPE, not an invoice, the transformation fails on it) and
    ConfigError when the stylesheet is (unreadable, not XSLT, tries file or network access, produces
    no HTML). Both are PecGatewayError: callers file the invoice anyway, without the HTML.
    """
    root = _invoice_tree(xml)
    result = _transform(_compile(stylesheet), root, stylesheet)
    # None for a text-method stylesheet, whatever the stubs say
    html = cast("etree._Element | None", result.getroot())
    if html is None or safexml.local_name(html).lower() != "html":
        raise ConfigError(
            f"{stylesheet}: the stylesheet did not produce an HTML document; {_INSTALL_HINT}"
        )
    _declare_utf8(html)
    return etree.tostring(result, method="html", encoding="UTF-8", doctype="<!DOCTYPE html>")


def stylesheet_for_invoice(schema_dir: Path, xml: bytes) -> Path | None:
    """The installed official stylesheet for this invoice's format (FPA12/FPR12 ordinaria, FSM10
    semplificata), the AssoSoftware one when only that is installed; None for other formats.

    Raises MalformedMessage (not an invoice) or ConfigError (schema directory missing or altered).
    """
    return schema.load(schema_dir).stylesheet_for(invoice.parse(xml).format)
