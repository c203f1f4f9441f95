"""SDI file names: strict for what we send, lenient for what we receive, total everywhere."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pecgateway.filename import (
    InvoiceName,
    NotificationName,
    NotificationType,
    invoice_stem,
    parse_invoice_name,
    parse_notification_name,
    same_invoice_file,
)

STRICT_VALID = [
    ("IT01234567890_00001.xml", InvoiceName("IT", "01234567890", "00001", "xml")),
    ("IT99999999999_00002.xml.p7m", InvoiceName("IT", "99999999999", "00002", "xml.p7m")),
    ("ITAAABBB99T99X999W_00001.zip", InvoiceName("IT", "AAABBB99T99X999W", "00001", "zip")),
    ("FR12345678910_00003.xml", InvoiceName("FR", "12345678910", "00003", "xml")),
    ("IT01234567890_x05mX.xml", InvoiceName("IT", "01234567890", "x05mX", "xml")),
    ("DE12_1.xml", InvoiceName("DE", "12", "1", "xml")),
    ("GB" + "A" * 28 + "_zzzzz.xml", InvoiceName("GB", "A" * 28, "zzzzz", "xml")),
]

STRICT_INVALID = [
    "01234567890_00001.xml",  # BL-33: no country prefix
    "it01234567890_00001.xml",  # lowercase country
    "IT0123456789_00001.xml",  # IT with 10 characters
    "IT01234567890123456_00001.xml",  # IT with 17 characters
    "IT01234567890_000001.xml",  # progressivo of 6 characters
    "IT01234567890_0000_.xml",
    "IT01234567890_00001.XML",  # what we send is lowercase
    "IT01234567890_00001.p7m",
    "IT01234567890_00001.xml.pk7",
    "IT01234567890-00001.xml",
    "IT01234567890_00001",
    "FRA_00001.xml",  # id codice of 1 character
    "GB" + "A" * 29 + "_1.xml",
    "IT01234567890_00001.xml\n",
    "",
]


@pytest.mark.parametrize(("name", "expected"), STRICT_VALID)
def test_strict_invoice_name_accepts_what_the_spec_allows(name: str, expected: InvoiceName) -> None:
    assert parse_invoice_name(name, strict=True) == expected


@pytest.mark.parametrize("name", STRICT_INVALID)
def test_bl33_strict_invoice_name_refuses_non_conforming_names(name: str) -> None:
    assert parse_invoice_name(name, strict=True) is None


LENIENT_VALID = [
    ("IT01234567890_00001.XML", "xml"),
    ("IT01234567890_00001.Xml", "xml"),
    ("IT01234567890_00001.xml.P7M", "xml.p7m"),
    ("IT01234567890_00001.XML.P7M", "xml.p7m"),
    ("IT01234567890_00001.p7m", "p7m"),
    ("IT01234567890_00001.xml.pk7", "xml.pk7"),
    ("IT01234567890_00001.pk7", "pk7"),
    ("IT01234567890_00001.ZIP", "zip"),
    ("it0123456789_00001.xml", "xml"),  # 10-character IT code: tolerated on receipt
]


@pytest.mark.parametrize(("name", "extension"), LENIENT_VALID)
def test_bl15_lenient_invoice_name_accepts_any_case_and_signature_suffix(
    name: str, extension: str
) -> None:
    parsed = parse_invoice_name(name, strict=False)
    assert parsed is not None
    assert parsed.extension == extension
    assert parsed.progressivo == "00001"


def test_invoice_name_transmitter_is_country_plus_id_codice() -> None:
    parsed = parse_invoice_name("IT01234567890_00001.xml", strict=True)
    assert parsed is not None
    assert parsed.transmitter == "IT01234567890"


@pytest.mark.parametrize(
    "name",
    ["01234567890_00001.xml", "IT01234567890_00001.pdf", "IT01234567890_00001_RC_001.xml"],
)
def test_lenient_invoice_name_still_refuses_what_is_no_invoice_name(name: str) -> None:
    assert parse_invoice_name(name, strict=False) is None


NOTIFICATIONS = [
    ("IT03339130126_00009_RC_003.xml", "IT03339130126_00009", NotificationType.RC, "003", "xml"),
    ("IT02652600210_00007_MT_002.xml", "IT02652600210_00007", NotificationType.MT, "002", "xml"),
    ("IT01234567890_11111_AT_001.zip", "IT01234567890_11111", NotificationType.AT, "001", "zip"),
    ("it01234567890_11111_ns_1.XML", "it01234567890_11111", NotificationType.NS, "1", "xml"),
    # BL-33: non-conforming invoice name, and SDI's 36-character cut of an invalid name
    ("01234567890_00001_NS_001.xml", "01234567890_00001", NotificationType.NS, "001", "xml"),
    (
        "fattura del mese di marzo 2024 nume_NS_001.xml",
        "fattura del mese di marzo 2024 nume",
        NotificationType.NS,
        "001",
        "xml",
    ),
    ("IT01234567890_1_EC_00A.xml", "IT01234567890_1", NotificationType.EC, "00A", "xml"),
]


@pytest.mark.parametrize(("name", "stem", "kind", "number", "extension"), NOTIFICATIONS)
def test_notification_name_is_parsed_in_any_case_with_any_stem(
    name: str, stem: str, kind: NotificationType, number: str, extension: str
) -> None:
    assert parse_notification_name(name) == NotificationName(stem, kind, number, extension)


@pytest.mark.parametrize(
    "name",
    [
        "IT01234567890_00001.xml",
        "IT01234567890_00001_XX_001.xml",
        "IT01234567890_00001_RC_0001.xml",
        "IT01234567890_00001_RC_001.xml.p7m",
        "_RC_001.xml",
        "IT01234567890_00001_RC_.xml",
    ],
)
def test_notification_name_refuses_other_names(name: str) -> None:
    assert parse_notification_name(name) is None


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("IT01234567890_00001.xml", "IT01234567890_00001"),
        ("IT01234567890_00001.xml.p7m", "IT01234567890_00001"),
        ("IT01234567890_00001.XML.P7M", "IT01234567890_00001"),
        ("IT01234567890_00001.p7m", "IT01234567890_00001"),
        ("IT01234567890_00001.xml.p7m.p7m", "IT01234567890_00001"),
        ("IT01234567890_00001.pk7", "IT01234567890_00001"),
        ("IT01234567890_00001.zip", "IT01234567890_00001"),
        ("IT01234567890_00001", "IT01234567890_00001"),
        ("notes.txt", "notes.txt"),
        (".xml", ".xml"),
    ],
)
def test_invoice_stem_strips_content_and_signature_extensions(name: str, stem: str) -> None:
    assert invoice_stem(name) == stem


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("IT01234567890_00001.xml", "IT01234567890_00001.xml.p7m", True),
        ("IT01234567890_00001.xml", "IT01234567890_00001.XML", True),
        ("IT01234567890_00001.xml.p7m", "IT01234567890_00001.p7m", True),
        ("IT01234567890_00001.xml", "IT01234567890_00002.xml", False),
        ("IT01234567890_00001.xml", "IT01234567890_00001.zip", False),
        ("IT01234567890_00001.xml", "IT09876543210_00001.xml", False),
    ],
)
def test_same_invoice_file_matches_nome_file_with_or_without_signature(
    a: str, b: str, same: bool
) -> None:
    assert same_invoice_file(a, b) is same
    assert same_invoice_file(b, a) is same


@given(st.text())
def test_filename_functions_are_total_over_arbitrary_text(name: str) -> None:
    for strict in (True, False):
        parsed = parse_invoice_name(name, strict=strict)
        assert parsed is None or isinstance(parsed, InvoiceName)
    notification = parse_notification_name(name)
    assert notification is None or isinstance(notification.type, NotificationType)
    assert isinstance(invoice_stem(name), str)
    assert same_invoice_file(name, name)


@given(
    st.from_regex(r"IT[0-9]{11}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]{1,5}", fullmatch=True),
    st.sampled_from(["xml", "xml.p7m", "zip"]),
)
def test_every_strict_name_is_also_a_lenient_name(
    transmitter: str, progressivo: str, extension: str
) -> None:
    name = f"{transmitter}_{progressivo}.{extension}"
    assert parse_invoice_name(name, strict=True) == parse_invoice_name(name, strict=False)
    assert invoice_stem(name) == f"{transmitter}_{progressivo}"
