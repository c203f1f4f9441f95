"""A fault-injecting TCP proxy for tests: forwards to a real server until told to drop or stall.

`async with tcp_proxy(host, port) as proxy:` listens on 127.0.0.1:`proxy.port`. `proxy.drop_after(n)`
closes every connection once `n` more bytes went from the server to the client (a drop mid-FETCH);
`proxy.stall()` stops forwarding server bytes (a dead peer that never answers); `proxy.heal()` undoes.
`proxy.stall_after_upload(n)` stalls once the clients sent `n` bytes in all from now on: a server
that takes a large message and whose reply to it never arrives (a timeout after SMTP DATA).
TLS passes through untouched, so certificate checks still apply end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

__all__ = ["TcpProxy", "tcp_proxy"]


@dataclass
class TcpProxy:
    port: int = 0
    dropped: int = 0
    _budget: int | None = None
    _stalled: bool = False
    _upload_left: int | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def drop_after(self, server_bytes: int) -> None:
        self._budget = server_bytes

    def stall(self) -> None:
        self._stalled = True

    def stall_after_upload(self, client_bytes: int) -> None:
        self._upload_left = client_bytes

    def heal(self) -> None:
        self._budget, self._stalled, self._upload_left = None, False, None

    def _uploaded(self, count: int) -> None:
        if self._upload_left is not None:
            self._upload_left -= count
            if self._upload_left <= 0:
                self._upload_left, self._stalled = None, True

    def _close_all(self) -> None:
        self.dropped += 1
        for writer in list(self._writers):
            writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_server: bool
    ) -> None:
        while data := await reader.read(16384):
            if not from_server:
                self._uploaded(len(data))
            if from_server and self._stalled:
                continue
            if from_server and self._budget is not None:
                if len(data) >= self._budget:
                    writer.write(data[: self._budget])
                    await writer.drain()
                    self._budget = None
                    self._close_all()
                    return
                self._budget -= len(data)
            writer.write(data)
            await writer.drain()

    async def _handle(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        self._writers |= {client_w, server_w}
        try:
            with suppress(ConnectionError):
                await asyncio.gather(
                    self._pump(client_r, server_w, False), self._pump(server_r, client_w, True)
                )
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.transport.abort()


@asynccontextmanager
async def tcp_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy()
    handlers: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await proxy._handle(reader, writer, host, port)
        finally:
            handlers.discard(task)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        proxy._close_all()
        for task in list(handlers):
            task.cancel()
        if handlers:
            await asyncio.wait(handlers)
        await server.wait_closed()
