"""Connection failures in plain words (shared by smtp and imap); real TLS where a server is involved."""

from __future__ import annotations

import asyncio
import enum
import socket
import ssl
from typing import TYPE_CHECKING

import pytest

from pecgateway import tls

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA


def _failure(exc: BaseException, security: str = "tls") -> str:
    return tls.connection_failure(
        exc, protocol="IMAP", host="imap.example.it", port=993, security=security
    )


def test_context_always_verifies_certificates_and_host_names() -> None:
    context = tls.context("")
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


class _Security(enum.Enum):
    STARTTLS = "starttls"


@pytest.mark.parametrize(
    ("setting", "expected"), [("TLS", "tls"), (_Security.STARTTLS, "starttls")]
)
def test_security_of_reads_strings_and_enums(setting: object, expected: str) -> None:
    assert tls.security_of(setting) == expected


@pytest.mark.servers
async def test_certificate_for_another_name_says_to_set_host(sandbox_ca: SandboxCA) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(sandbox_ca.server.cert_path, sandbox_ca.server.key_path)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    # the sandbox certificate names localhost and 127.0.0.1 only
    listener = await asyncio.start_server(hang_up, "127.0.0.2", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await asyncio.open_connection(
                "127.0.0.2", port, ssl=tls.context(sandbox_ca.ca_file), ssl_handshake_timeout=5
            )
    finally:
        listener.close()
        await listener.wait_closed()
    words = tls.connection_failure(
        caught.value, protocol="SMTP", host="127.0.0.2", port=port, security="tls"
    )
    assert words.startswith("certificate not trusted: ")
    assert "the certificate is not for '127.0.0.2': set host to the name" in words
    assert "ca_file" not in words


def test_unknown_host_name_says_check_host() -> None:
    wrapped = ConnectionError("Error connecting")
    wrapped.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert _failure(wrapped) == (
        "the host name 'imap.example.it' cannot be found: check host (and this machine's DNS)"
    )


def test_timeout_with_implicit_tls_points_at_host_port_and_firewall() -> None:
    assert _failure(TimeoutError()) == (
        "no answer in time (timeout_s): check host and port, and that no firewall is in the way"
    )


def test_any_other_failure_names_host_port_and_the_settings() -> None:
    words = _failure(OSError(101, "Network is unreachable"))
    assert words == (
        "cannot connect to imap.example.it:993: [Errno 101] Network is unreachable; check host, "
        "port and security"
    )
