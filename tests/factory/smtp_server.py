"""An SMTP server for tests: aiosmtpd listeners in the test's own event loop, TLS and AUTH on.

`smtp_server(ca, ...)` is an async context manager yielding a `SmtpServer` that records every
accepted message and can be told to answer DATA (or RCPT) with a given reply, e.g. "451 4.3.0 busy".
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["Received", "SmtpServer", "smtp_server"]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class SmtpServer:
    host: str
    port: int
    username: str
    password: str
    ca_file: Path
    security: str = "tls"
    received: list[Received] = field(default_factory=list)
    data_reply: str | None = None  # e.g. "554 5.6.0 refused"; None = accept
    rcpt_reply: str | None = None
    data_arrived: asyncio.Event = field(default_factory=asyncio.Event)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.server.rcpt_reply:
            return self.server.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.server.data_reply:
            return self.server.data_reply
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        self.server.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        self.server.data_arrived.set()
        return f"250 2.0.0 Ok: queued as Q{len(self.server.received)}"


def _authenticator(username: str, password: str) -> Any:
    def check(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


@asynccontextmanager
async def smtp_server(
    cert_file: Path,
    key_file: Path,
    ca_file: Path,
    *,
    security: str = "tls",
    username: str = "sender@pec.example.test",
    password: str = "smtp-pw",
) -> AsyncIterator[SmtpServer]:
    """Listens on 127.0.0.1 (a free port) with implicit TLS (`tls`) or STARTTLS (`starttls`)."""
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    state = SmtpServer("127.0.0.1", 0, username, password, ca_file, security)
    handler = _Handler(state)
    auth = _authenticator(username, password)

    def factory() -> SMTP:
        if security == "tls":
            return SMTP(handler, authenticator=auth, auth_require_tls=False, hostname="localhost")
        return SMTP(
            handler,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            authenticator=auth,
            hostname="localhost",
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, "127.0.0.1", 0, ssl=context if security == "tls" else None
    )
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()
