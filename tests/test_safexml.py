"""safexml: strict and recovering parsing of untrusted bytes; no DTD, no entities, bounded size."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from pecgateway import safexml
from pecgateway.errors import MalformedMessage

Parser = Callable[[bytes], etree._Element]
PARSERS: list[Parser] = [safexml.parse, safexml.parse_recovering]


@pytest.mark.parametrize("parse", PARSERS)
def test_document_larger_than_the_bound_is_refused_before_parsing(parse: Parser) -> None:
    data = b"<a>" + b" " * (safexml.MAX_XML_BYTES - 6) + b"</a>"  # one byte over, well-formed
    assert len(data) == safexml.MAX_XML_BYTES + 1
    with pytest.raises(MalformedMessage, match=f"larger than {safexml.MAX_XML_BYTES} bytes"):
        parse(data)


def test_document_of_exactly_the_bound_is_parsed() -> None:
    piece = b"<b/>" + b" " * 1020  # libxml2 refuses text nodes over 10 MB without XML_PARSE_HUGE
    pieces, rest = divmod(safexml.MAX_XML_BYTES - 7, len(piece))
    data = b"<a>" + piece * pieces + b" " * rest + b"</a>"
    assert len(data) == safexml.MAX_XML_BYTES
    assert len(safexml.parse(data)) == pieces


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', id="internal-subset"),
        pytest.param(b'<!doctype a SYSTEM "http://example.com/a.dtd"><a/>', id="external-dtd"),
        pytest.param(b'<a><!ENTITY x "y"></a>', id="entity-without-doctype"),
    ],
)
@pytest.mark.parametrize("parse", PARSERS)
def test_dtd_and_entity_declarations_are_refused(parse: Parser, data: bytes) -> None:
    with pytest.raises(MalformedMessage, match="DOCTYPE or ENTITY declaration is refused"):
        parse(data)


def test_strict_parse_names_the_line_of_the_error() -> None:
    with pytest.raises(MalformedMessage, match=r"not well-formed XML: .*\(line 2\)"):
        safexml.parse(b"<a>\n<b></a>")


def test_recovering_parse_reads_what_strict_parsing_refuses() -> None:
    root = safexml.parse_recovering(b"<a><b>text</a>")
    assert safexml.local_name(root) == "a"
    assert root.findtext("b") == "text"


def test_recovering_parse_without_any_element_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="even with recovery"):
        safexml.parse_recovering(b"no markup at all")


def test_local_name_drops_the_namespace_and_is_empty_for_a_comment() -> None:
    root = safexml.parse(b'<p:Ricevuta xmlns:p="urn:x"><!-- c --></p:Ricevuta>')
    assert safexml.local_name(root) == "Ricevuta"
    assert safexml.local_name(root[0]) == ""


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512) | st.text(max_size=256).map(lambda t: f"<a>{t}</a>".encode()))
def test_parsers_return_an_element_or_raise_malformed_message_on_arbitrary_bytes(
    data: bytes,
) -> None:
    for parse in PARSERS:
        try:
            root = parse(data)
        except MalformedMessage:
            continue
        assert isinstance(root, etree._Element)
