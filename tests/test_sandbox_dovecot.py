"""The sandbox's private Dovecot: TLS both ways, the extensions the service needs, a clean stop."""

from __future__ import annotations

import imaplib
import ssl
from pathlib import Path

import pytest

from pecgateway.errors import ConfigError, TransientError
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.dovecot import Dovecot, DovecotMissing, MailAccount
from tests.factory.e2e import alive

pytestmark = pytest.mark.servers

RAW = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: hello\r\n\r\nbody\r\n"


def _context(account: MailAccount) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(account.ca_file))


def test_fresh_mail_user_has_an_empty_inbox(dovecot: Dovecot, mail_user: MailAccount) -> None:
    assert dovecot.count(mail_user.user) == 0


def test_implicit_tls_login_verifies_against_the_sandbox_ca(mail_user: MailAccount) -> None:
    with imaplib.IMAP4_SSL(
        mail_user.host, mail_user.port, ssl_context=_context(mail_user), timeout=10
    ) as imap:
        imap.login(mail_user.user, mail_user.password)
        _, data = imap.capability()
        capabilities = set(data[0].decode().split())
    assert {"IDLE", "UIDPLUS", "MOVE"} <= capabilities


def test_starttls_login_verifies_against_the_sandbox_ca(mail_user: MailAccount) -> None:
    with imaplib.IMAP4(mail_user.host, mail_user.starttls_port, timeout=10) as imap:
        assert "STARTTLS" in imap.capabilities
        imap.starttls(ssl_context=_context(mail_user))
        status, _ = imap.login(mail_user.user, mail_user.password)
    assert status == "OK"


def test_tls_refuses_a_client_that_does_not_trust_the_sandbox_ca(mail_user: MailAccount) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            mail_user.host, mail_user.port, ssl_context=ssl.create_default_context(), timeout=10
        )


def test_wrong_password_is_refused(mail_user: MailAccount) -> None:
    with (
        imaplib.IMAP4_SSL(
            mail_user.host, mail_user.port, ssl_context=_context(mail_user), timeout=10
        ) as imap,
        pytest.raises(imaplib.IMAP4.error),
    ):
        imap.login(mail_user.user, "wrong")


def test_append_with_doveadm_stores_the_message_unchanged(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    dovecot.append(mail_user.user, RAW)
    assert _fetch_all(mail_user) == [RAW]


def test_imap_append_stores_the_message(dovecot: Dovecot, mail_user: MailAccount) -> None:
    dovecot.imap_append(mail_user.user, RAW)
    dovecot.imap_append(mail_user.user, RAW, mailbox="Archive")
    assert dovecot.count(mail_user.user) == 1
    assert dovecot.count(mail_user.user, "Archive") == 1


def _fetch_all(account: MailAccount) -> list[bytes]:
    with imaplib.IMAP4_SSL(
        account.host, account.port, ssl_context=_context(account), timeout=10
    ) as imap:
        imap.login(account.user, account.password)
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        messages = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            first = parts[0]
            assert isinstance(first, tuple)
            messages.append(first[1])
        return messages


def test_stop_leaves_no_dovecot_process_behind(
    public_tmp_path: Path, sandbox_ca: SandboxCA
) -> None:
    server = Dovecot(public_tmp_path, {"someone": "pw"}, ca=sandbox_ca)
    server.start()
    try:
        context = _context(server.account("someone"))
        with imaplib.IMAP4_SSL(server.host, server.port, ssl_context=context, timeout=10) as imap:
            imap.login("someone", "pw")
            pids = server.pids()
            server.stop()
    finally:
        server.stop()
    assert len(pids) > 1
    assert [pid for pid in pids if alive(pid)] == []
    assert not server.running


def test_missing_dovecot_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox_ca: SandboxCA
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DovecotMissing, match="apt-get install dovecot-imapd"):
        Dovecot(tmp_path / "d", {}, ca=sandbox_ca).start()


def test_stop_twice_is_harmless(public_tmp_path: Path, sandbox_ca: SandboxCA) -> None:
    server = Dovecot(public_tmp_path, {"someone": "pw"}, ca=sandbox_ca)
    server.start()
    server.stop()
    server.stop()
    assert server.pids() == []


def test_directory_dovecot_cannot_traverse_is_refused_with_a_hint(
    tmp_path: Path, sandbox_ca: SandboxCA
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="world-traversable"):
        Dovecot(private / "d", {}, ca=sandbox_ca).start()


def test_sandbox_ca_is_reused_from_its_directory(sandbox_ca: SandboxCA) -> None:
    again = SandboxCA.load_or_create(sandbox_ca.directory)
    assert again.ca.cert_pem == sandbox_ca.ca.cert_pem
    assert again.provider.key_pem == sandbox_ca.provider.key_pem


def test_server_certificate_names_localhost_and_the_loopback_address(
    sandbox_ca: SandboxCA,
) -> None:
    from cryptography import x509

    names = sandbox_ca.server.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sandbox_ca.server.certificate.issuer == sandbox_ca.ca.certificate.subject


def test_a_refused_imap_append_says_why_in_words_not_python_bytes(
    dovecot: Dovecot, mail_user: MailAccount
) -> None:
    with pytest.raises(TransientError, match="IMAP APPEND refused") as raised:
        dovecot.imap_append(mail_user.user, b"")  # Dovecot saves no zero-byte message
    assert "zero byte" in str(raised.value)
    assert "b'" not in str(raised.value)
    assert 'b"' not in str(raised.value)
