"""The SMTP submission listeners of the sandbox's PEC provider (aiosmtpd, in the running loop).

Owns the two listeners (implicit TLS, the 465 role; plain upgraded with STARTTLS, the 587 role),
AUTH PLAIN/LOGIN against the sandbox accounts over TLS only, refusing MAIL without authentication,
and the hand-off of each accepted message to a callback. The only module that imports aiosmtpd.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

__all__ = ["OnSubmission", "Submission", "SubmissionServer", "server_tls_context"]

_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Submission:
    """One message as the user submitted it: who logged in, the SMTP envelope, the raw bytes."""

    login: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes


# returns the SMTP reply to send ("250 ..."), or None for the default success reply
OnSubmission = Callable[[Submission], Awaitable[str | None]]


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The listeners' TLS: the sandbox's server certificate, TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def _uses_tls(server: Any) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("sslcontext") is not None


class _Authenticator:
    def __init__(self, accounts: Mapping[str, str]) -> None:
        self._accounts = accounts

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        if not _uses_tls(server):
            return AuthResult(
                success=False, handled=False, message="538 5.7.11 Encryption required"
            )
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self._accounts.get(login) == password:
            return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


class _Handler:
    def __init__(self, on_submission: OnSubmission) -> None:
        self._on_submission = on_submission

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content or b""
        submission = Submission(
            login=str(session.auth_data),
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
            data=data if isinstance(data, bytes) else data.encode("utf-8"),
        )
        reply = await self._on_submission(submission)
        return reply or "250 2.0.0 Ok: queued"


class SubmissionServer:
    """Both listeners on 127.0.0.1; ``port`` speaks implicit TLS, ``starttls_port`` STARTTLS."""

    def __init__(
        self,
        accounts: Mapping[str, str],
        tls: ssl.SSLContext,
        on_submission: OnSubmission,
        *,
        hostname: str,
        data_size_limit: int,
    ) -> None:
        self._accounts = dict(accounts)
        self._tls = tls
        self._handler = _Handler(on_submission)
        self._hostname = hostname
        self._data_size_limit = data_size_limit
        self._servers: list[asyncio.Server] = []
        self._sessions: set[SMTP] = set()
        self.port = 0
        self.starttls_port = 0

    def _smtp(self, *, implicit_tls: bool) -> SMTP:
        options: dict[str, Any] = {"auth_required": False, "auth_require_tls": False}
        if not implicit_tls:
            options = {"tls_context": self._tls, "require_starttls": True, "auth_required": True}
        smtp = SMTP(
            self._handler,
            hostname=self._hostname,
            authenticator=_Authenticator(self._accounts),
            data_size_limit=self._data_size_limit,
            timeout=60,
            **options,
        )
        # keep the connected ones and those not connected yet; drop the finished ones
        self._sessions = {s for s in self._sessions if s.session is None or s.transport is not None}
        self._sessions.add(smtp)
        return smtp

    async def start(self, port: int = 0, starttls_port: int = 0) -> None:
        """Listens on ``port`` and ``starttls_port``; one that is taken (or 0) becomes any free
        port: compare ``port``/``starttls_port`` afterwards."""
        # aiosmtpd logs a deprecation of its own internals at WARNING on every AUTH
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        implicit = await self._listen(lambda: self._smtp(implicit_tls=True), port, self._tls)
        self._servers.append(implicit)
        upgraded = await self._listen(lambda: self._smtp(implicit_tls=False), starttls_port, None)
        self._servers.append(upgraded)
        self.port = implicit.sockets[0].getsockname()[1]
        self.starttls_port = upgraded.sockets[0].getsockname()[1]

    async def _listen(
        self, factory: Callable[[], SMTP], port: int, tls: ssl.SSLContext | None
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if port:
            try:
                return await loop.create_server(factory, _HOST, port, ssl=tls)
            except OSError:
                pass  # taken by another program since: any free one
        return await loop.create_server(factory, _HOST, 0, ssl=tls)

    async def stop(self) -> None:
        """Stops listening and closes every open client connection."""
        for server in self._servers:
            server.close()
        for smtp in self._sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._sessions.clear()
