"""mail: tolerant header decoding and MIME walking; every stdlib failure degrades into a warning."""

from __future__ import annotations

import base64
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pecgateway import mail
from pecgateway.errors import MalformedMessage


def _message(raw: bytes) -> Message:
    return BytesParser(policy=policy.default).parsebytes(raw)


class _Hostile(EmailMessage):
    """A part whose stdlib accessors fail the way they do on hostile input."""

    def get_content_type(self) -> str:
        raise LookupError("unknown encoding: 7bit")

    def get_filename(self, failobj: object = None) -> str:
        raise ValueError("bad parameter")

    def get_payload(self, i: int | None = None, decode: bool = False) -> object:  # type: ignore[override]
        if decode:
            raise LookupError("unknown encoding: 7bit")
        return "raw text \udcff"

    def get_content_disposition(self) -> str:
        raise IndexError("parser bug")

    def as_bytes(self, unixfrom: bool = False, policy: object = None) -> bytes:
        raise TypeError("generator bug")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=?utf-8?Q?caff=C3=A8?=", "caffè"),
        ("a =? b", "a =? b"),
        ("=?utf-8?B?A?=", "=?utf-8?B?A?="),
        ("=?no-such-charset?Q?caff=E8?=", "caffè"),
        ("plain\r\n  folded", "plain folded"),
    ],
)
def test_decode_words_degrades_instead_of_raising(value: str, expected: str) -> None:
    warnings: list[str] = []
    assert mail.decode_words(value, warnings) == expected


def test_broken_and_unknown_encoded_words_leave_a_warning() -> None:
    warnings: list[str] = []
    mail.decode_words("=?utf-8?B?A?=", warnings)
    mail.decode_words("=?no-such-charset?Q?x?=", warnings)
    assert len(warnings) == 2


def test_headers_are_case_insensitive_and_unfolded() -> None:
    headers = mail.Headers(_message(b"x-RICEVUTA:\r\n  Accettazione \r\n\r\n"))
    assert headers.raw("X-Ricevuta") == "Accettazione"
    assert headers.raw("X-Trasporto") is None


def test_unreadable_address_header_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(values: list[str]) -> list[tuple[str, str]]:
        raise ValueError("address parser bug")

    monkeypatch.setattr(mail, "getaddresses", broken)
    warnings: list[str] = []
    headers = mail.Headers(_message(b"From: a@b.it\r\n\r\n"))
    assert headers.addresses("From", warnings) == []
    assert warnings


def test_hostile_part_accessors_degrade() -> None:
    part = _Hostile()
    warnings: list[str] = []
    assert mail.content_type(part) == "application/octet-stream"
    assert mail.filename(part, warnings) is None
    assert mail.payload_bytes(part, warnings) == b"raw text \xff"
    assert mail.disposition(part) is None
    assert mail.message_bytes(part, warnings) is None
    assert len(warnings) == 3


def test_rfc2231_file_name_is_decoded() -> None:
    part = _message(b"Content-Type: application/xml; name*=utf-8''caff%C3%A8.xml\r\n\r\n<a/>")
    assert mail.filename(part, []) == "caffè.xml"


def test_small_accessors_on_bare_parts() -> None:
    bare = _message(b"Subject: x\r\n\r\nbody")
    assert mail.transfer_encoding(bare) == ""
    assert mail.children(bare) == []
    multipart = _message(
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n'
    )
    assert mail.payload_bytes(multipart, []) == b""
    assert len(mail.children(multipart)) == 1


def test_leaves_stop_at_the_depth_limit() -> None:
    depth = mail.MAX_DEPTH + 5
    raw = b"Subject: deep\r\n"
    for level in range(depth):
        raw += f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
    raw += b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    assert mail.leaves(_message(raw)) == []


@pytest.mark.parametrize("cte", [b"quoted-printable", b"base64"])
def test_embedded_message_with_an_encoded_cte_is_decoded(cte: bytes) -> None:
    inner = b"From: sdi01@pec.fatturapa.it\r\nSubject: x\r\n\r\nbody\r\n"
    encoded = inner if cte == b"quoted-printable" else base64.encodebytes(inner)
    raw = (
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + encoded
    )
    if cte == b"quoted-printable":  # make the first line not look like a header
        raw = raw.replace(b"From:", b"From=3A")
    found = mail.embedded_message(_message(raw), [])
    assert found is not None
    assert mail.Headers(found).raw("From") == "sdi01@pec.fatturapa.it"


def test_embedded_message_that_is_no_mail_is_none_with_a_warning() -> None:
    raw = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\r\n\r\njunk"
    warnings: list[str] = []
    assert mail.embedded_message(_message(raw), warnings) is None
    assert warnings


def test_parse_bytes_refuses_headerless_bytes() -> None:
    with pytest.raises(MalformedMessage, match="no header lines"):
        mail.parse_bytes(b"\r\n\r\njust a body")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../x.xml", "x.xml"),
        ("C:\\dir\\y.xml", "C:_dir_y.xml"),
        ("%E8/etc/passwd", "%E8_etc_passwd"),
        ("..", ""),
        ("a\x00b.xml", "ab.xml"),
    ],
)
def test_safe_name_is_one_printable_component_keeping_what_a_person_recognises(
    name: str, expected: str
) -> None:
    assert mail.safe_name(name) == expected


def test_a_failing_mime_parser_gives_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def __init__(self, policy: object) -> None:
            pass

        def parsebytes(self, raw: bytes) -> Message:
            raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(mail, "BytesParser", Broken)
    with pytest.raises(MalformedMessage, match="the MIME parser failed"):
        mail.parse_bytes(b"Subject: x\r\n\r\n")


def test_embedded_message_with_undecodable_base64_is_none_with_a_warning() -> None:
    raw = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nABCDE\r\n"
    warnings: list[str] = []
    assert mail.embedded_message(_message(raw), warnings) is None
    assert warnings


def test_encoded_word_with_a_nul_in_its_charset_is_read_as_latin1_with_a_warning() -> None:
    """Found by fuzzing: bytes.decode raises ValueError (not LookupError) on a NUL in the name."""
    from pecgateway import pec

    parsed = pec.parse(b"From: =?utf\x00-8?q?x?= <a@b.it>\r\n\r\nx")
    assert parsed.type is None
    assert parsed.mittente == "a@b.it"
    assert any("unknown charset" in warning for warning in parsed.warnings)


@given(charset=st.text(min_size=1, max_size=20).filter(lambda c: "?" not in c))
def test_any_charset_name_in_an_encoded_word_never_escapes_as_another_error(charset: str) -> None:
    from pecgateway import pec
    from pecgateway.errors import MalformedMessage

    raw = b"From: =?" + charset.encode("utf-8", "surrogatepass") + b"?q?x?= <a@b.it>\r\n\r\nx"
    outcome: object
    try:
        outcome = pec.parse(raw)
    except MalformedMessage as exc:
        outcome = exc
    assert isinstance(outcome, pec.PecMessage | MalformedMessage)
