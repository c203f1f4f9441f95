"""The outbound message: addressing, attachment types, headers, and the round trip through pec."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pecgateway.compose import compose, content_type_for, new_message_id

DATE = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
SENDER = "fatture@pec.example.it"
SDI = "sdi01@pec.fatturapa.it"
XML = b'<?xml version="1.0" encoding="UTF-8"?>\n<p:FatturaElettronica versione="FPR12"/>\r\n'


def build(file_name: str = "IT01234567890_00001.xml", data: bytes = XML) -> email.message.Message:
    message = compose(
        file_name=file_name,
        data=data,
        sender=SENDER,
        recipient=SDI,
        message_id="<abc123@pec.example.it>",
        date=DATE,
    )
    return email.message_from_bytes(bytes(message), policy=email.policy.default)


def attachments(message: email.message.Message) -> list[email.message.EmailMessage]:
    assert isinstance(message, email.message.EmailMessage)
    return list(message.iter_attachments())


def test_message_is_from_the_pec_account_to_sdi_with_the_file_name_as_subject() -> None:
    message = build()
    assert message["From"] == SENDER
    assert message["To"] == SDI
    assert message["Subject"] == "IT01234567890_00001.xml"
    assert message["Message-ID"] == "<abc123@pec.example.it>"
    assert message["Date"] == "Tue, 01 Dec 2026 09:30:00 +0100"


def test_message_has_no_cc_or_bcc() -> None:
    message = build()
    assert message["Cc"] is None
    assert message["Bcc"] is None


def test_attachment_is_the_file_byte_for_byte() -> None:
    data = XML + bytes(range(256))
    (part,) = attachments(build(data=data))
    assert part.get_filename() == "IT01234567890_00001.xml"
    assert part.get_payload(decode=True) == data


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("IT01234567890_00001.xml", "application/xml"),
        ("IT01234567890_00001.xml.p7m", "application/pkcs7-mime"),
        ("IT01234567890_00001.zip", "application/zip"),
        ("IT01234567890_00001.bin", "application/octet-stream"),
    ],
)
def test_attachment_content_type_follows_the_extension(name: str, content_type: str) -> None:
    (part,) = attachments(build(file_name=name))
    assert part.get_content_type() == content_type


def test_content_type_ignores_case() -> None:
    assert content_type_for("IT01234567890_00001.XML.P7M") == ("application", "pkcs7-mime")


def test_body_is_short_text_naming_the_file() -> None:
    message = build()
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "IT01234567890_00001.xml" in body.get_content()


def test_wire_form_uses_crlf_line_endings() -> None:
    raw = bytes(
        compose(
            file_name="IT01234567890_00001.xml",
            data=XML,
            sender=SENDER,
            recipient=SDI,
            message_id="<a@b.it>",
            date=DATE,
        )
    )
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")


def test_new_message_id_lowercases_the_domain() -> None:
    assert new_message_id("Tok.123", "PEC.Example.IT") == "<Tok.123@pec.example.it>"


@pytest.mark.parametrize(("token", "domain"), [("a b", "x.it"), ("a", "x..it"), ("", "x.it")])
def test_new_message_id_refuses_header_unsafe_parts(token: str, domain: str) -> None:
    with pytest.raises(ValueError, match="Message-ID"):
        new_message_id(token, domain)


@pytest.mark.parametrize(
    "changes",
    [
        {"file_name": "IT01_1.xml\r\nBcc: x@y.it"},
        {"sender": "Someone <a@b.it>"},
        {"recipient": "a@b.it, c@d.it"},
        {"message_id": "no-brackets@x.it"},
        {"date": datetime(2026, 1, 1)},  # naive: refused
    ],
)
def test_compose_refuses_arguments_that_cannot_go_in_headers(changes: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "file_name": "IT01234567890_00001.xml",
        "data": XML,
        "sender": SENDER,
        "recipient": SDI,
        "message_id": "<a@b.it>",
        "date": DATE,
    }
    arguments.update(changes)
    with pytest.raises(ValueError):  # noqa: PT011 - the one documented error
        compose(**arguments)  # type: ignore[arg-type]


@given(st.binary(max_size=2000))
def test_any_bytes_survive_as_the_attachment(data: bytes) -> None:
    (part,) = attachments(build(data=data))
    assert part.get_payload(decode=True) == data


def test_pec_parse_sees_our_message_as_plain_email_with_the_attachment() -> None:
    pec = pytest.importorskip("pecgateway.pec")
    raw = bytes(
        compose(
            file_name="IT01234567890_00001.xml.p7m",
            data=b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x02",
            sender=SENDER,
            recipient=SDI,
            message_id="<Token-1@PEC.example.it>",
            date=datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
        )
    )
    parsed = pec.parse(raw)
    assert parsed.type is None
    assert parsed.message_id == "<Token-1@pec.example.it>"
    assert parsed.oggetto == "IT01234567890_00001.xml.p7m"
    (attachment,) = parsed.attachments
    assert attachment.filename == "IT01234567890_00001.xml.p7m"
    assert attachment.content_type == "application/pkcs7-mime"
    assert attachment.data == b"0\x80\x06\x09*\x86H\x86\xf7\r\x01\x07\x02"
