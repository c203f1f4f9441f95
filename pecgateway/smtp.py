"""Sending one message to the PEC provider's SMTP server (aiosmtplib; imported only here).

Owns the SMTP conversation: implicit TLS or STARTTLS with certificate verification always on, login,
one message, quit, every step under ``asyncio.timeout``. Converts library failures into
``TransientError`` (network, timeouts, 4xx, login refused) or ``PermanentSendError`` (5xx on the message).
A failure before the message's data was fully sent is a sure failure; a timeout or a drop while
waiting for the reply to the data is ``OutcomeUnknown`` (the server may have taken the message).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from pecgateway import tls
from pecgateway.errors import PermanentSendError, TransientError

__all__ = ["Endpoint", "OutcomeUnknown", "check_login", "send", "tls_context"]


class OutcomeUnknown(TransientError):
    """The whole message went to the server, then its reply never came (a timeout, a drop): the
    server may well have taken it. Never resend at once; wait for the message's receipt."""


class Endpoint(Protocol):
    """The ``[accounts.smtp]`` / ``[accounts.imap]`` settings an adapter needs (see config.py)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def security(self) -> object: ...  # "tls" | "starttls" (a str or a str-valued Enum)
    @property
    def username(self) -> str: ...
    @property
    def ca_file(self) -> object: ...  # "" / None for none, or a path
    @property
    def timeout_s(self) -> float: ...


def tls_context(ca_file: object) -> ssl.SSLContext:
    """The system trust store plus the extra CA file, if any (kept for callers: see ``tls``)."""
    return tls.context(ca_file)


def security_of(endpoint: Endpoint) -> str:
    """``"tls"`` or ``"starttls"`` whether the setting is a string or a str-valued Enum."""
    return tls.security_of(endpoint.security)


async def send(message: EmailMessage, endpoint: Endpoint, *, password: str) -> str:
    """Sends ``message`` (sender and recipients from its headers); returns the server's reply.

    Raises ``TransientError`` when trying again later may help, ``PermanentSendError`` when the server
    refused the message for good (its code and words are kept).
    """
    client = _client(endpoint)
    where = f"SMTP {endpoint.host}:{endpoint.port}"
    try:
        await _login(client, endpoint, password)
        async with asyncio.timeout(endpoint.timeout_s):
            await _envelope(client, message)
        reply = await _data(client, message, endpoint.timeout_s, where)
    except aiosmtplib.SMTPResponseException as exc:
        raise _from_response(where, exc) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _transient(where, exc) from exc
    finally:
        await _quit(client, endpoint.timeout_s)
    return reply


async def _envelope(client: aiosmtplib.SMTP, message: EmailMessage) -> None:
    """MAIL FROM and RCPT TO from the message's headers (a refusal raises with its code)."""
    sender = aiosmtplib.email.extract_sender(message)
    recipients = aiosmtplib.email.extract_recipients(message)
    if sender is None or not recipients:
        raise ValueError("the message has no From or no To header")  # compose always sets both
    await client.ehlo()
    options = ["BODY=8BITMIME"] if client.supports_extension("8BITMIME") else []
    await client.mail(sender, options=options)
    for recipient in recipients:
        await client.rcpt(recipient)


async def _data(
    client: aiosmtplib.SMTP, message: EmailMessage, timeout_s: float, where: str
) -> str:
    """DATA, the message, and the server's reply to it.

    Any failure before the message is written is a sure failure; once it is written, a missing
    reply raises ``OutcomeUnknown``.
    """
    async with asyncio.timeout(timeout_s):
        start = await client.execute_command(b"DATA")
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("connection lost before the message was sent")
    protocol.write(_payload(message))
    try:
        async with asyncio.timeout(timeout_s):
            reply = await protocol.read_response(timeout=timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        raise _unknown(where, exc) from exc
    if reply.code != 250:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    return reply.message


def _payload(message: EmailMessage) -> bytes:
    """The message as sent after DATA: CRLF lines, leading dots doubled, ending in ``.``."""
    flat = aiosmtplib.email.flatten_message(message, utf8=False, cte_type="8bit")
    flat = re.sub(rb"\r\n|\r|\n", b"\r\n", flat)
    if not flat.endswith(b"\r\n"):
        flat += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", flat) + b".\r\n"


def _unknown(where: str, exc: BaseException) -> OutcomeUnknown:
    if isinstance(exc, TimeoutError):
        why = "no answer in time (timeout_s)"
    else:
        why = f"the connection failed: {str(exc) or type(exc).__name__}"
    reason = f"{why} after the whole message was sent: the server may have taken it"
    return OutcomeUnknown(reason, subject=where)


async def check_login(endpoint: Endpoint, *, password: str) -> None:
    """Connects and logs in, then quits; raises ``TransientError`` saying what went wrong."""
    client = _client(endpoint)
    where = f"SMTP {endpoint.host}:{endpoint.port}"
    try:
        await _login(client, endpoint, password)
    except aiosmtplib.SMTPResponseException as exc:
        raise TransientError(f"{where}: {exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise _transient(where, exc) from exc
    finally:
        await _quit(client, endpoint.timeout_s)


def _client(endpoint: Endpoint) -> aiosmtplib.SMTP:
    security = security_of(endpoint)
    return aiosmtplib.SMTP(
        hostname=endpoint.host,
        port=endpoint.port,
        use_tls=security == "tls",
        start_tls=security == "starttls",
        tls_context=tls_context(endpoint.ca_file),
        timeout=endpoint.timeout_s,
    )


async def _connect(client: aiosmtplib.SMTP, endpoint: Endpoint) -> None:
    """Connects (and upgrades to TLS); a failure says which setting to look at."""
    try:
        async with asyncio.timeout(endpoint.timeout_s):
            await client.connect()
    except aiosmtplib.SMTPResponseException as exc:
        # a refused greeting or STARTTLS is about the connection, never about the message
        reason = f"the server refused the connection: {exc.code} {exc.message}".strip()
        raise TransientError(reason, subject=f"SMTP {endpoint.host}:{endpoint.port}") from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        reason = tls.connection_failure(
            exc,
            protocol="SMTP",
            host=endpoint.host,
            port=endpoint.port,
            security=security_of(endpoint),
        )
        raise TransientError(reason, subject=f"SMTP {endpoint.host}:{endpoint.port}") from exc


async def _login(client: aiosmtplib.SMTP, endpoint: Endpoint, password: str) -> None:
    await _connect(client, endpoint)
    if endpoint.username:
        try:
            async with asyncio.timeout(endpoint.timeout_s):
                await client.login(endpoint.username, password)
        except aiosmtplib.SMTPAuthenticationError as exc:
            # a refused login is the account's trouble, not the invoice's: retry later
            reason = f"login as {endpoint.username} refused: {exc.code} {exc.message}"
            raise TransientError(reason, subject=f"SMTP {endpoint.host}:{endpoint.port}") from exc


async def _quit(client: aiosmtplib.SMTP, timeout_s: float) -> None:
    if not client.is_connected:
        return
    try:
        async with asyncio.timeout(timeout_s):
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()  # the message's fate is already decided; drop the connection


def _from_response(where: str, exc: aiosmtplib.SMTPResponseException) -> Exception:
    words = f"{exc.code} {exc.message}".strip()
    if 500 <= exc.code < 600:
        return PermanentSendError(
            f"the server refused the message: {words}", smtp_code=exc.code, subject=where
        )
    return TransientError(f"the server asked to try again later: {words}", subject=where)


def _transient(where: str, exc: BaseException) -> TransientError:
    """A failure after the connection was made (connecting has its own words: ``_connect``)."""
    if isinstance(exc, TimeoutError):
        return TransientError("no answer in time (timeout_s)", subject=where)
    detail = str(exc) or type(exc).__name__
    return TransientError(f"connection failed: {detail}", subject=where)
