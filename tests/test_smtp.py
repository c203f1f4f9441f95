"""smtp.send against a real aiosmtpd on 127.0.0.1, with TLS certificates made at test time."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import TYPE_CHECKING

import pytest

from pecgateway import smtp
from pecgateway.errors import PermanentSendError, TransientError
from tests.factory.smtp_server import SmtpServer, smtp_server
from tests.factory.tcp_proxy import tcp_proxy

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA

pytestmark = pytest.mark.servers


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    security: str
    username: str
    ca_file: str
    timeout_s: float = 5.0


def _message(to: str = "sdi01@pec.fatturapa.it") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@pec.example.test"
    message["To"] = to
    message["Subject"] = "IT01234567890_00001.xml"
    message["Message-ID"] = "<abc123@pec.example.test>"
    message.set_content("invoice attached")
    message.add_attachment(
        b"<x/>", maintype="application", subtype="xml", filename="IT01234567890_00001.xml"
    )
    return message


def _endpoint(server: SmtpServer) -> _Endpoint:
    return _Endpoint(
        server.host, server.port, server.security, server.username, str(server.ca_file)
    )


@pytest.fixture(params=["tls", "starttls"])
async def server(
    request: pytest.FixtureRequest, sandbox_ca: SandboxCA
) -> AsyncIterator[SmtpServer]:
    pair = sandbox_ca.server
    async with smtp_server(
        pair.cert_path, pair.key_path, sandbox_ca.ca_file, security=request.param
    ) as running:
        yield running


async def test_send_delivers_the_message_with_envelope_from_headers(server: SmtpServer) -> None:
    reply = await smtp.send(
        _message(),
        _endpoint(server),
        password=server.password,
    )
    assert "queued as Q1" in reply
    [got] = server.received
    assert got.mail_from == "sender@pec.example.test"
    assert got.rcpt_tos == ["sdi01@pec.fatturapa.it"]
    assert got.message["Message-ID"] == "<abc123@pec.example.test>"


async def test_check_login_succeeds_with_the_right_password(server: SmtpServer) -> None:
    await smtp.check_login(
        _endpoint(server),
        password=server.password,
    )
    assert server.received == []


async def test_wrong_password_is_transient_and_names_the_user(server: SmtpServer) -> None:
    with pytest.raises(TransientError, match=r"login as sender@pec\.example\.test refused: 535"):
        await smtp.send(
            _message(),
            _endpoint(server),
            password="wrong",
        )
    assert server.received == []


async def test_5xx_on_data_is_permanent_with_the_servers_words(sandbox_ca: SandboxCA) -> None:
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        server.data_reply = "554 5.6.0 message refused: attachment too large"
        with pytest.raises(PermanentSendError) as caught:
            await smtp.send(_message(), _endpoint(server), password=server.password)
    assert caught.value.smtp_code == 554
    assert "attachment too large" in str(caught.value)


async def test_4xx_on_data_is_transient(sandbox_ca: SandboxCA) -> None:
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        server.data_reply = "451 4.3.0 try again later"
        with pytest.raises(TransientError, match=r"451 4.3.0 try again later"):
            await smtp.send(_message(), _endpoint(server), password=server.password)


async def test_5xx_on_recipient_is_permanent(sandbox_ca: SandboxCA) -> None:
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        server.rcpt_reply = "550 5.1.1 no such mailbox"
        with pytest.raises(PermanentSendError, match=r"550 5.1.1 no such mailbox"):
            await smtp.send(_message(), _endpoint(server), password=server.password)


async def test_unknown_ca_is_refused_and_says_to_set_ca_file(sandbox_ca: SandboxCA) -> None:
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        endpoint = replace(_endpoint(server), ca_file="")
        with pytest.raises(TransientError, match=r"certificate not trusted.*ca_file"):
            await smtp.send(_message(), endpoint, password=server.password)
    assert server.received == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_connection_says_nothing_listens_on_host_and_port() -> None:
    port = _closed_port()
    endpoint = _Endpoint("127.0.0.1", port, "tls", "u", "")
    with pytest.raises(TransientError) as caught:
        await smtp.send(_message(), endpoint, password="x")
    assert caught.value.reason == (
        f"the server is not listening on 127.0.0.1:{port}: check host and port, or the server "
        "is down"
    )
    assert str(caught.value).startswith(f"SMTP 127.0.0.1:{port}: ")


async def test_implicit_tls_against_a_starttls_port_says_try_starttls(
    sandbox_ca: SandboxCA,
) -> None:
    pair = sandbox_ca.server
    async with smtp_server(
        pair.cert_path, pair.key_path, sandbox_ca.ca_file, security="starttls"
    ) as server:
        endpoint = replace(_endpoint(server), security="tls")
        with pytest.raises(TransientError) as caught:
            await smtp.send(_message(), endpoint, password=server.password)
    assert caught.value.reason == (
        'the server does not speak implicit TLS on this port: try security = "starttls" '
        '(or the other port, usually 465 with security = "tls")'
    )
    assert "WRONG_VERSION_NUMBER" not in str(caught.value)
    assert server.received == []


async def test_starttls_against_an_implicit_tls_port_says_try_tls(sandbox_ca: SandboxCA) -> None:
    pair = sandbox_ca.server
    async with smtp_server(
        pair.cert_path, pair.key_path, sandbox_ca.ca_file, security="tls"
    ) as server:
        endpoint = replace(_endpoint(server), security="starttls", timeout_s=0.5)
        with pytest.raises(TransientError) as caught:
            await smtp.check_login(endpoint, password=server.password)
    assert 'set security = "tls"' in caught.value.reason
    assert "(usually 465)" in caught.value.reason


async def test_unknown_ca_on_check_login_says_to_set_ca_file(server: SmtpServer) -> None:
    endpoint = replace(_endpoint(server), ca_file="")
    with pytest.raises(TransientError) as caught:
        await smtp.check_login(endpoint, password=server.password)
    assert caught.value.reason.startswith("certificate not trusted: ")
    assert caught.value.reason.endswith("set ca_file to its PEM")
    assert "[SSL:" not in caught.value.reason


async def test_greeting_refused_is_transient_never_a_refusal_of_the_message() -> None:
    async def busy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.3.2 too busy, go away\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    listener = await asyncio.start_server(busy, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    endpoint = _Endpoint("127.0.0.1", port, "starttls", "u", "")
    try:
        with pytest.raises(TransientError, match="the server refused the connection: 554"):
            await smtp.send(_message(), endpoint, password="x")
    finally:
        listener.close()
        await listener.wait_closed()


async def test_silent_server_times_out_as_transient() -> None:
    finished = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # says nothing, waits for the client to give up
        writer.close()
        await writer.wait_closed()
        finished.set()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    endpoint = _Endpoint("127.0.0.1", port, "starttls", "u", "", timeout_s=0.3)
    try:
        with pytest.raises(TransientError, match=r"no answer in time"):
            await smtp.send(_message(), endpoint, password="x")
        async with asyncio.timeout(5):
            await finished.wait()  # the client hung up: nothing is left open
    finally:
        server.close()
        await server.wait_closed()


# ---- sure failures and unknown outcomes --------------------------------------------------------


def _large_message() -> EmailMessage:
    message = _message()
    message.add_attachment(
        bytes(range(256)) * 200, maintype="application", subtype="octet-stream", filename="a.bin"
    )
    return message


async def test_no_reply_after_the_whole_message_was_sent_is_an_unknown_outcome(
    sandbox_ca: SandboxCA,
) -> None:
    pair = sandbox_ca.server
    async with (
        smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server,
        tcp_proxy(server.host, server.port) as proxy,
    ):
        endpoint = replace(_endpoint(server), port=proxy.port, timeout_s=1.0)
        proxy.stall_after_upload(16_000)  # within the message: the reply to DATA never comes
        with pytest.raises(smtp.OutcomeUnknown, match=r"may have taken it"):
            await smtp.send(_large_message(), endpoint, password=server.password)
        async with asyncio.timeout(5):
            await server.data_arrived.wait()
        assert len(server.received) == 1


async def test_no_reply_before_the_message_was_sent_is_a_sure_failure(
    sandbox_ca: SandboxCA,
) -> None:
    pair = sandbox_ca.server
    async with (
        smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server,
        tcp_proxy(server.host, server.port) as proxy,
    ):
        endpoint = replace(_endpoint(server), port=proxy.port, timeout_s=1.0)
        proxy.stall_after_upload(1)  # the greeting is heard, nothing after the first bytes
        with pytest.raises(TransientError) as raised:
            await smtp.send(_large_message(), endpoint, password=server.password)
        assert not isinstance(raised.value, smtp.OutcomeUnknown)
        assert server.received == []
