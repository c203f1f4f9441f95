"""The control channel of a running sandbox: how `sandbox deliver` and `sandbox inject` reach it.

Owns the wire protocol: a TCP connection on 127.0.0.1 (port and token in DIR/sandbox.json), one JSON
request line, one JSON reply line. Requests: {"token", "command": "deliver"|"inject", "file_name",
"data" (base64)}; replies: {"ok": true, "detail"} or {"ok": false, "error"}. Knows no sandbox logic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pecgateway.errors import PecGatewayError

__all__ = ["ControlError", "ControlServer", "Request", "send_request"]

_MAX_LINE = 64 * 1024 * 1024  # a 30 MB message in base64 plus the envelope
_TIMEOUT_S = 60.0


class ControlError(Exception):
    """The request was refused or could not be carried out; the text says why."""


@dataclass(frozen=True, slots=True)
class Request:
    command: str
    file_name: str
    data: bytes


Handler = Callable[[Request], Awaitable[str]]  # returns a detail line; raises ControlError


def _decode(line: bytes, token: str) -> Request:
    try:
        document = json.loads(line)
        data = base64.b64decode(document["data"], validate=True)
        supplied = str(document["token"])
        request = Request(str(document["command"]), str(document.get("file_name", "")), data)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ControlError(f"unreadable control request: {exc}") from exc
    if not hmac.compare_digest(supplied, token):
        raise ControlError("wrong control token: is sandbox.json from this sandbox?")
    return request


class ControlServer:
    """Listens on 127.0.0.1 and hands each authenticated request to ``handler``."""

    def __init__(self, token: str, handler: Handler) -> None:
        self._token = token
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                line = await reader.readline()
            reply: dict[str, Any] = {
                "ok": True,
                "detail": await self._handler(_decode(line, self._token)),
            }
        except (ControlError, PecGatewayError) as exc:
            reply = {"ok": False, "error": str(exc)}
        except (TimeoutError, ValueError, ConnectionError) as exc:
            reply = {"ok": False, "error": f"control request failed: {exc!r}"}
        try:
            writer.write(json.dumps(reply).encode("utf-8") + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def send_request(port: int, token: str, request: Request, timeout_s: float = _TIMEOUT_S) -> str:
    """Sends one request to a running sandbox; returns its detail or raises ControlError."""
    document = {
        "token": token,
        "command": request.command,
        "file_name": request.file_name,
        "data": base64.b64encode(request.data).decode("ascii"),
    }
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
            connection.sendall(json.dumps(document).encode("utf-8") + b"\n")
            answer = connection.makefile("rb").readline()
    except OSError as exc:
        raise ControlError(f"the sandbox does not answer on port {port} ({exc})") from exc
    try:
        reply = json.loads(answer)
    except ValueError as exc:
        raise ControlError("the sandbox closed the connection without an answer") from exc
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "refused")))
    return str(reply.get("detail", ""))
