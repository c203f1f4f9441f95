"""The IMAP Mailbox: pure response parsing, then the real Dovecot (kicks, drops, stalls via a proxy)."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pytest

from pecgateway import imap
from pecgateway.errors import TransientError
from tests.factory.tcp_proxy import TcpProxy, tcp_proxy

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount


# ---- pure parsing ---------------------------------------------------------------------------------


def test_parse_select_reads_uidvalidity_uidnext_and_exists() -> None:
    lines = [
        b"FLAGS (\\Answered \\Seen)",
        b"3 EXISTS",
        b"0 RECENT",
        b"OK [UIDVALIDITY 1712345678] UIDs valid",
        b"OK [UIDNEXT 42] Predicted next UID",
        b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
    ]
    assert imap.parse_select(lines) == imap.SelectInfo(1712345678, 42, 3)


def test_parse_select_without_uidvalidity_gives_none() -> None:
    assert imap.parse_select([b"0 EXISTS"]) == imap.SelectInfo(None, None, 0)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"3 1 2", b"Search completed."], [1, 2, 3]),
        ([b"", b"Search completed."], []),
        ([b"SEARCH 7 9", b"done"], [7, 9]),
        ([bytearray(b"5")], [5]),
    ],
)
def test_parse_search_returns_sorted_uids(lines: list[bytes], expected: list[int]) -> None:
    assert imap.parse_search(lines) == expected


@pytest.mark.parametrize("literal_type", [bytes, bytearray])
def test_parse_fetch_accepts_bytes_and_bytearray_literals(literal_type: type) -> None:
    body = b"Subject: x\r\n\r\nhello {5}\r\n"
    lines = [
        b"1 FETCH (UID 7 BODY[] {%d}" % len(body),
        literal_type(body),
        b")",
        b"Fetch completed.",
    ]
    assert imap.parse_fetch(lines) == {7: body}


def test_parse_fetch_finds_a_uid_given_after_the_literal() -> None:
    body = b"raw"
    lines: list[imap.Line] = [b"4 FETCH (BODY[] {3}", bytearray(body), b" UID 12)", b"OK"]
    assert imap.parse_fetch(lines) == {12: body}


def test_parse_fetch_leaves_out_a_torn_literal() -> None:
    lines: list[imap.Line] = [b"1 FETCH (UID 7 BODY[] {100}", bytearray(b"short"), b")"]
    assert imap.parse_fetch(lines) == {}


def test_parse_fetch_of_several_messages() -> None:
    lines: list[imap.Line] = [
        b"1 FETCH (UID 3 BODY[] {1}",
        bytearray(b"a"),
        b")",
        b"2 FETCH (UID 4 BODY[] {2}",
        bytearray(b"bc"),
        b")",
        b"OK",
    ]
    assert imap.parse_fetch(lines) == {3: b"a", 4: b"bc"}


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"OK Still here"], (False, False)),
        ([b"4 EXISTS", b"1 RECENT"], (True, False)),
        ([b"BYE Server shutting down."], (False, True)),
        ([b"2 EXPUNGE"], (False, False)),
    ],
)
def test_push_says_new_mail_or_goodbye(lines: list[bytes], expected: tuple[bool, bool]) -> None:
    assert imap.push_says(lines) == expected


# ---- against the real Dovecot ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Endpoint:
    host: str
    port: int
    security: str
    username: str
    ca_file: str
    folder: str = "INBOX"
    timeout_s: float = 5.0


def _endpoint(account: MailAccount, security: str = "tls") -> _Endpoint:
    port = account.port if security == "tls" else account.starttls_port
    return _Endpoint(account.host, port, security, account.user, str(account.ca_file))


def _mail(number: int, size: int = 0) -> bytes:
    filler = (b"x" * 76 + b"\r\n") * (size // 78)
    return (
        b"From: a@example.test\r\nTo: b@example.test\r\nSubject: message %d\r\n"
        b"Message-ID: <m%d@example.test>\r\n\r\nbody %d\r\n" % (number, number, number)
    ) + filler


def _flags(dovecot: Dovecot, user: str) -> str:
    result = subprocess.run(
        ["doveadm", "-c", str(dovecot.conf), "fetch", "-u", user, "flags", "mailbox", "INBOX"],
        capture_output=True,
        check=True,
        text=True,
    )
    return result.stdout


def _kick(dovecot: Dovecot, user: str) -> None:
    subprocess.run(
        ["doveadm", "-c", str(dovecot.conf), "kick", user], capture_output=True, check=True
    )


@pytest.mark.servers
@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_connect_selects_and_lists_every_uid(
    dovecot: Dovecot, mail_user: MailAccount, security: str
) -> None:
    for number in (1, 2, 3):
        dovecot.append(mail_user.user, _mail(number))
    async with imap.Mailbox(_endpoint(mail_user, security), password=mail_user.password) as box:
        assert box.uidvalidity > 0
        assert box.selected.exists == 3
        assert await box.uids_after(0) == [1, 2, 3]
        assert await box.uids_after(2) == [3]
        assert await box.uids_after(3) == []


@pytest.mark.servers
async def test_fetch_returns_the_exact_bytes_and_leaves_flags_alone(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    raw = _mail(1, size=300_000)
    dovecot.append(mail_user.user, raw)
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        assert await box.fetch(1) == raw
        assert await box.fetch(99) is None
    assert "\\Seen" not in _flags(dovecot, mail_user.user)


@pytest.mark.servers
async def test_move_puts_the_message_into_the_folder(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, _mail(1))
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        await box.move(1, "Archive")
    assert dovecot.count(mail_user.user, "Archive") == 1
    assert dovecot.count(mail_user.user, "INBOX") == 0


@pytest.mark.servers
async def test_move_to_a_missing_folder_is_refused(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, _mail(1))
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        with pytest.raises(TransientError, match="move refused"):
            await box.move(1, "No Such Folder")
    assert dovecot.count(mail_user.user, "INBOX") == 1


@pytest.mark.servers
async def test_wrong_password_is_transient_and_names_the_user(mail_user: MailAccount) -> None:
    with pytest.raises(TransientError, match=re.escape(f"login as {mail_user.user} refused")):
        async with imap.Mailbox(_endpoint(mail_user), password="wrong"):
            pass


@pytest.mark.servers
@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_unknown_ca_says_to_set_ca_file(mail_user: MailAccount, security: str) -> None:
    endpoint = replace(_endpoint(mail_user, security), ca_file="")
    with pytest.raises(TransientError) as caught:
        async with imap.Mailbox(endpoint, password=mail_user.password):
            pass
    assert caught.value.reason.startswith("certificate not trusted: ")
    assert caught.value.reason.endswith("if the server uses a private CA, set ca_file to its PEM")
    assert "[SSL:" not in caught.value.reason


@pytest.mark.servers
async def test_implicit_tls_against_the_starttls_port_says_try_starttls(
    mail_user: MailAccount,
) -> None:
    endpoint = replace(_endpoint(mail_user), port=mail_user.starttls_port)
    with pytest.raises(TransientError) as caught:
        async with imap.Mailbox(endpoint, password=mail_user.password):
            pass
    assert caught.value.reason == (
        'the server does not speak implicit TLS on this port: try security = "starttls" '
        '(or the other port, usually 993 with security = "tls")'
    )


@pytest.mark.servers
async def test_starttls_against_the_implicit_tls_port_says_try_tls(
    mail_user: MailAccount,
) -> None:
    endpoint = replace(_endpoint(mail_user, "starttls"), port=mail_user.port, timeout_s=0.5)
    with pytest.raises(TransientError) as caught:
        async with imap.Mailbox(endpoint, password=mail_user.password):
            pass
    assert caught.value.reason == (
        "no answer in time (timeout_s); if this port expects implicit TLS (usually 993), set "
        'security = "tls"'
    )


@pytest.mark.servers
async def test_idle_wakes_up_on_new_mail(dovecot: Dovecot, mail_user: MailAccount) -> None:
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        assert box.can_idle
        waiting = asyncio.ensure_future(box.wait_for_mail(30, asyncio.Event()))
        await asyncio.sleep(0.2)
        await asyncio.to_thread(dovecot.append, mail_user.user, _mail(1))
        async with asyncio.timeout(10):
            assert await waiting is True
        assert await box.uids_after(0) == [1]


@pytest.mark.servers
async def test_idle_returns_false_when_the_time_is_up(mail_user: MailAccount) -> None:
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        assert await box.wait_for_mail(0.3, asyncio.Event()) is False
        assert await box.uids_after(0) == []  # the connection is still usable


@pytest.mark.servers
async def test_idle_returns_at_once_when_stop_is_set(mail_user: MailAccount) -> None:
    stop = asyncio.Event()
    async with imap.Mailbox(_endpoint(mail_user), password=mail_user.password) as box:
        waiting = asyncio.ensure_future(box.wait_for_mail(60, stop))
        await asyncio.sleep(0.2)
        stop.set()
        async with asyncio.timeout(5):
            assert await waiting is False


@pytest.mark.servers
async def test_kick_during_idle_raises_transient_and_a_new_mailbox_works(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    endpoint = _endpoint(mail_user)
    async with imap.Mailbox(endpoint, password=mail_user.password) as box:
        waiting = asyncio.ensure_future(box.wait_for_mail(60, asyncio.Event()))
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_kick, dovecot, mail_user.user)
        with pytest.raises(TransientError, match=r"BYE|connection lost"):
            async with asyncio.timeout(10):
                await waiting
        with pytest.raises(TransientError):
            await box.uids_after(0)  # fails fast, never hangs on the dead connection
    dovecot.append(mail_user.user, _mail(1))
    async with imap.Mailbox(endpoint, password=mail_user.password) as again:
        assert await again.uids_after(0) == [1]


@pytest.fixture
async def proxy(mail_user: MailAccount) -> AsyncIterator[TcpProxy]:
    async with tcp_proxy(mail_user.host, mail_user.port) as running:
        yield running


@pytest.mark.servers
async def test_drop_mid_fetch_is_transient_and_the_retry_gets_the_whole_message(
    dovecot: Dovecot, mail_user: MailAccount, proxy: TcpProxy
) -> None:
    raw = _mail(1, size=2_000_000)
    dovecot.append(mail_user.user, raw)
    endpoint = replace(_endpoint(mail_user), port=proxy.port)
    async with imap.Mailbox(endpoint, password=mail_user.password) as box:
        proxy.drop_after(200_000)
        with pytest.raises(TransientError, match="fetch"):
            await box.fetch(1)
    assert proxy.dropped >= 1
    proxy.heal()
    async with imap.Mailbox(endpoint, password=mail_user.password) as again:
        assert await again.fetch(1) == raw


@pytest.mark.servers
async def test_a_server_that_stops_answering_times_out(
    dovecot: Dovecot, mail_user: MailAccount, proxy: TcpProxy
) -> None:
    dovecot.append(mail_user.user, _mail(1))
    endpoint = replace(_endpoint(mail_user), port=proxy.port, timeout_s=0.5)
    async with imap.Mailbox(endpoint, password=mail_user.password) as box:
        proxy.stall()
        with pytest.raises(TransientError, match="no answer in time"):
            await box.uids_after(0)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.servers
async def test_connection_refused_says_nothing_listens_on_host_and_port() -> None:
    port = _closed_port()
    with pytest.raises(TransientError) as caught:
        async with imap.Mailbox(_Endpoint("127.0.0.1", port, "tls", "u", ""), password="x"):
            pass
    assert caught.value.reason == (
        f"the server is not listening on 127.0.0.1:{port}: check host and port, or the server "
        "is down"
    )
    assert str(caught.value).startswith(f"IMAP 127.0.0.1:{port}: ")
