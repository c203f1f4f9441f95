"""ber: the raw tag-length-value walk to a SignedData's encapsulated OCTET STRING."""

from __future__ import annotations

import pytest

from pecgateway import ber


def test_explicit_octets_reads_a_primitive_octet_string_inside_the_explicit_tag() -> None:
    assert ber.explicit_octets(b"\xa0\x05\x04\x03abc", 0) == b"abc"


def test_explicit_octets_joins_the_chunks_of_an_indefinite_constructed_octet_string() -> None:
    data = b"\xa0\x80\x24\x80\x04\x02ab\x04\x01c\x00\x00\x00\x00"
    assert ber.explicit_octets(data, 0) == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xa0", id="explicit-tag-cut-after-its-tag-byte"),
        pytest.param(b"\xa0\x03", id="explicit-tag-with-no-contents-left"),
        pytest.param(b"\xa0\x03\x1f\x81\x01", id="high-tag-number-form-inside"),
        pytest.param(b"\xbf\x81\x00\x03\x04\x01a", id="high-tag-number-explicit-tag"),
        pytest.param(b"\xa0\x03\x02\x01\x00", id="integer-instead-of-octet-string"),
    ],
)
def test_explicit_octets_is_none_when_no_octet_string_follows_the_explicit_tag(
    data: bytes,
) -> None:
    assert ber.explicit_octets(data, 0) is None


def test_walk_to_content_finds_the_content_after_the_data_oid_despite_junk_after_it() -> None:
    inner = ber.PKCS7_OID_PREFIX + b"\x01" + b"\xa0\x05\x04\x03xml"
    data = b"\x30\x80" + ber.SIGNED_DATA_OID + b"\xa0\x80\x30\x80" + inner + b"\xff\xff"
    assert ber.walk_to_content(data) == b"xml"


def test_header_length_is_none_for_a_length_of_more_than_four_bytes() -> None:
    assert ber.header_length(b"\x30\x85\x00\x00\x00\x00\x01") is None


def test_is_signed_data_recognises_only_a_sequence_starting_with_the_signed_data_oid() -> None:
    assert ber.is_signed_data(b"\x30\x80" + ber.SIGNED_DATA_OID)
    assert not ber.is_signed_data(b"\x31\x80" + ber.SIGNED_DATA_OID)
    assert not ber.is_signed_data(b"\x30\x80" + ber.PKCS7_OID_PREFIX + b"\x01")
