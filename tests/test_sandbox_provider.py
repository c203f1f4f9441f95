"""The sandbox's PEC provider on real aiosmtpd listeners and a real Dovecot: checks, receipts, TLS."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
import structlog

from pecgateway import pec
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.dovecot import Dovecot, MailAccount
from pecgateway.sandbox.envelope import Original, TipoRicevuta
from pecgateway.sandbox.notification import XadesSigner
from pecgateway.sandbox.provider import PecProvider, ProviderConfig
from pecgateway.sandbox.simulator import SdiSimulator, SimulatorConfig
from pecgateway.sandbox.spool import Spool, original_from_json, original_json
from pecgateway.sandbox.submission import Submission, SubmissionServer, server_tls_context

pytestmark = pytest.mark.servers

SDI = "sdi01@pec.fatturapa.it"
OUR_ID = "<20240506.invoice-00001.a1b2c3d4e5f60718293a4b5c6d7e8f90@pec.sandbox.test>"


@dataclass
class Sandbox:
    account: MailAccount
    provider: PecProvider
    server: SubmissionServer
    dovecot: Dovecot
    ca: SandboxCA

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.ca_file))

    async def send(
        self,
        message: EmailMessage,
        *,
        starttls: bool = False,
        to: list[str] | None = None,
        mail_from: str | None = None,
    ) -> None:
        await asyncio.to_thread(self._send, message, starttls, to, mail_from)
        await self.provider.idle()

    def _send(
        self, message: EmailMessage, starttls: bool, to: list[str] | None, mail_from: str | None
    ) -> None:
        smtp: smtplib.SMTP
        if starttls:
            smtp = smtplib.SMTP("127.0.0.1", self.server.starttls_port, timeout=10)
            smtp.starttls(context=self.context())
        else:
            smtp = smtplib.SMTP_SSL(
                "127.0.0.1", self.server.port, context=self.context(), timeout=10
            )
        with smtp:
            smtp.login(self.account.user, self.account.password)
            # sendmail, not send_message: send_message would drop a Bcc header
            recipients = to or [str(message["To"])]
            raw = message.as_bytes(policy=policy.SMTP)
            smtp.sendmail(mail_from or self.account.user, recipients, raw)

    def mailbox(self) -> list[bytes]:
        context = self.context()
        with imaplib.IMAP4_SSL(
            "127.0.0.1", self.account.port, ssl_context=context, timeout=10
        ) as imap:
            imap.login(self.account.user, self.account.password)
            imap.select("INBOX", readonly=True)
            _, found = imap.uid("SEARCH", "ALL")
            raws = []
            for uid in found[0].split():
                _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                assert isinstance(parts[0], tuple)
                raws.append(parts[0][1])
            return raws

    def parsed(self) -> list[pec.PecMessage]:
        return [pec.parse(raw) for raw in self.mailbox()]


def _signer(ca: SandboxCA) -> XadesSigner:
    return XadesSigner(ca.sdi.key_pem, ca.sdi.cert_pem)


async def _start(
    dovecot: Dovecot,
    account: MailAccount,
    ca: SandboxCA,
    config: ProviderConfig,
    state: Path,
    *,
    sdi: SimulatorConfig | None = None,
    queue: Spool | None = None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[PecProvider, SubmissionServer]:
    simulator = SdiSimulator(
        signer=_signer(ca), schemas=None, config=sdi or SimulatorConfig(), state_path=state
    )

    async def deposit(raw: bytes) -> None:
        await asyncio.to_thread(dovecot.imap_append, account.user, raw)

    provider = PecProvider(
        user=account.user,
        ca=ca,
        deposit=deposit,
        simulator=simulator,
        log=structlog.get_logger("test"),
        config=config,
        queue=queue,
        **({"clock": clock} if clock else {}),
    )
    tls = server_tls_context(ca.server.cert_path, ca.server.key_path)
    server = SubmissionServer(
        {account.user: account.password},
        tls,
        provider.submit,
        hostname="smtps.pec.sandbox.test",
        data_size_limit=40 * 2**20,
    )
    await server.start()
    return provider, server


@pytest.fixture
def provider_config() -> ProviderConfig:
    return ProviderConfig()


@pytest.fixture
async def sandbox(
    dovecot: Dovecot,
    mail_user: MailAccount,
    sandbox_ca: SandboxCA,
    provider_config: ProviderConfig,
    tmp_path: Path,
) -> AsyncIterator[Sandbox]:
    provider, server = await _start(
        dovecot, mail_user, sandbox_ca, provider_config, tmp_path / "sdi.json"
    )
    yield Sandbox(mail_user, provider, server, dovecot, sandbox_ca)
    await server.stop()
    await provider.stop()


def _message(sender: str, to: str = SDI, **extra: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = "IT01234567890_00001.xml"
    message["Message-ID"] = OUR_ID
    for name, value in extra.items():
        message[name.replace("_", "-")] = value
    message.set_content("Invio fattura.")
    message.add_attachment(
        b"<not-an-invoice/>", "application", "octet-stream", filename="IT01234567890_00001.xml"
    )
    return message


def _types(messages: list[pec.PecMessage]) -> list[pec.PecType | None]:
    return [m.type for m in messages]


async def test_accepted_message_gets_accettazione_referring_to_our_message_id(
    sandbox: Sandbox,
) -> None:
    await sandbox.send(_message(sandbox.account.user))
    accettazione = sandbox.parsed()[0]
    assert accettazione.type is pec.PecType.ACCETTAZIONE
    assert accettazione.riferimento_message_id == OUR_ID
    assert accettazione.daticert is not None
    assert accettazione.daticert.msgid == OUR_ID
    assert accettazione.identificativo is not None
    assert accettazione.identificativo.endswith("@pec.sandbox.test")


async def test_message_to_sdi_gets_consegna_from_sdis_provider_with_the_original(
    sandbox: Sandbox,
) -> None:
    await sandbox.send(_message(sandbox.account.user))
    accettazione, consegna = sandbox.parsed()[:2]
    assert consegna.type is pec.PecType.AVVENUTA_CONSEGNA
    assert consegna.riferimento_message_id == OUR_ID
    assert consegna.identificativo == accettazione.identificativo
    assert consegna.daticert is not None
    assert consegna.daticert.consegna == SDI
    assert consegna.daticert.ricevuta == "completa"
    assert [a.filename for a in consegna.attachments] == ["IT01234567890_00001.xml"]
    assert consegna.postacert is not None
    inner = message_from_bytes(consegna.postacert, policy=policy.default)
    assert str(inner["Message-ID"]).strip() == f"<{accettazione.identificativo}>"
    assert str(inner["X-Riferimento-Message-ID"]).strip() == OUR_ID


async def test_sdi_answers_from_the_newly_assigned_address(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user))
    answer = sandbox.parsed()[2]
    assert answer.type is pec.PecType.POSTA_CERTIFICATA
    assert answer.sdi_address is not None
    assert answer.sdi_address != SDI
    assert answer.gestore == "Sogei SpA (sandbox)"


@pytest.mark.parametrize(
    ("tipo", "attachments", "has_postacert"),
    [("breve", 1, True), ("sintetica", 0, False)],
)
async def test_consegna_honours_x_tipo_ricevuta(
    sandbox: Sandbox, tipo: str, attachments: int, has_postacert: bool
) -> None:
    await sandbox.send(_message(sandbox.account.user, X_TipoRicevuta=tipo))
    consegna = sandbox.parsed()[1]
    assert consegna.daticert is not None
    assert consegna.daticert.ricevuta == tipo
    assert len(consegna.attachments) == attachments
    assert (consegna.postacert is not None) is has_postacert
    if attachments:
        assert consegna.attachments[0].data.startswith(b"SHA-256: ")


async def test_unknown_recipient_gets_errore_consegna_no_dest(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user, to="nobody@pec.example.it"))
    accettazione, errore = sandbox.parsed()
    assert accettazione.type is pec.PecType.ACCETTAZIONE
    assert errore.type is pec.PecType.ERRORE_CONSEGNA
    assert errore.errore == "no-dest"
    assert errore.riferimento_message_id == OUR_ID


async def test_from_other_than_the_account_is_not_accepted(sandbox: Sandbox) -> None:
    message = _message("someone-else@pec.sandbox.test")
    await sandbox.send(message, mail_from=sandbox.account.user)
    (notice,) = sandbox.parsed()
    assert notice.type is pec.PecType.NON_ACCETTAZIONE
    assert notice.riferimento_message_id == OUR_ID
    assert "From header" in (notice.errore_esteso or "")


async def test_mail_from_other_than_the_account_is_not_accepted(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user), mail_from="other@pec.sandbox.test")
    (notice,) = sandbox.parsed()
    assert notice.type is pec.PecType.NON_ACCETTAZIONE
    assert "MAIL FROM" in (notice.errore_esteso or "")


async def test_bcc_is_not_accepted(sandbox: Sandbox) -> None:
    message = _message(sandbox.account.user, Bcc="hidden@pec.example.it")
    await sandbox.send(message, to=[SDI])
    (notice,) = sandbox.parsed()
    assert notice.type is pec.PecType.NON_ACCETTAZIONE
    assert "Bcc" in (notice.errore_esteso or "")


async def test_rcpt_to_differing_from_to_is_not_accepted(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user), to=[SDI, "extra@pec.example.it"])
    (notice,) = sandbox.parsed()
    assert notice.type is pec.PecType.NON_ACCETTAZIONE
    assert "extra@pec.example.it" in (notice.errore_esteso or "")


@pytest.mark.parametrize("provider_config", [ProviderConfig(max_message_bytes=2000)])
async def test_message_over_the_size_limit_is_not_accepted(sandbox: Sandbox) -> None:
    message = _message(sandbox.account.user)
    message.add_attachment(b"x" * 4000, "application", "octet-stream", filename="big.bin")
    await sandbox.send(message)
    (notice,) = sandbox.parsed()
    assert notice.type is pec.PecType.NON_ACCETTAZIONE
    assert "limit" in (notice.errore_esteso or "")


@pytest.mark.parametrize("provider_config", [ProviderConfig(preavviso_after_s=0.01)])
async def test_stuck_delivery_gets_preavviso_then_errore_consegna(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user))
    assert _types(sandbox.parsed()) == [
        pec.PecType.ACCETTAZIONE,
        pec.PecType.PREAVVISO_ERRORE_CONSEGNA,
        pec.PecType.ERRORE_CONSEGNA,
    ]


async def test_starttls_submission_works_with_verification(sandbox: Sandbox) -> None:
    await sandbox.send(_message(sandbox.account.user), starttls=True)
    assert _types(sandbox.parsed())[:2] == [
        pec.PecType.ACCETTAZIONE,
        pec.PecType.AVVENUTA_CONSEGNA,
    ]


async def test_mail_without_authentication_is_refused(sandbox: Sandbox) -> None:
    def attempt() -> int:
        with smtplib.SMTP_SSL(
            "127.0.0.1", sandbox.server.port, context=sandbox.context(), timeout=10
        ) as smtp:
            smtp.ehlo()
            code, _ = smtp.mail(sandbox.account.user)
            return code

    assert await asyncio.to_thread(attempt) == 530


async def test_wrong_password_is_refused(sandbox: Sandbox) -> None:
    def attempt() -> None:
        with smtplib.SMTP_SSL(
            "127.0.0.1", sandbox.server.port, context=sandbox.context(), timeout=10
        ) as smtp:
            smtp.login(sandbox.account.user, "wrong")

    with pytest.raises(smtplib.SMTPAuthenticationError):
        await asyncio.to_thread(attempt)


async def test_auth_is_not_offered_before_starttls(sandbox: Sandbox) -> None:
    def features() -> tuple[bool, bool]:
        with smtplib.SMTP("127.0.0.1", sandbox.server.starttls_port, timeout=10) as smtp:
            smtp.ehlo()
            before = smtp.has_extn("auth")
            smtp.starttls(context=sandbox.context())
            smtp.ehlo()
            return before, smtp.has_extn("auth")

    before, after = await asyncio.to_thread(features)
    assert (before, after) == (False, True)


async def test_tls_certificate_is_verified_against_the_sandbox_ca(sandbox: Sandbox) -> None:
    def connect() -> None:
        smtplib.SMTP_SSL(
            "127.0.0.1", sandbox.server.port, context=ssl.create_default_context(), timeout=10
        ).close()

    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.to_thread(connect)


def _smime_verify(raw: bytes, ca_file: Path, path: Path) -> str | None:
    """None when openssl verifies the S/MIME signature against ``ca_file``, else its complaint."""
    path.write_bytes(raw)
    command = ["openssl", "smime", "-verify", "-CAfile", str(ca_file), "-in", str(path)]
    result = subprocess.run(
        [*command, "-out", "/dev/null"], capture_output=True, text=True, check=False
    )
    return None if result.returncode == 0 else result.stderr


async def test_every_provider_message_verifies_against_the_sandbox_ca(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.send(_message(sandbox.account.user))
    raws = sandbox.mailbox()
    problems = [
        await asyncio.to_thread(_smime_verify, raw, sandbox.ca.ca_file, tmp_path / f"{n}.eml")
        for n, raw in enumerate(raws)
    ]
    assert len(raws) == 3
    assert problems == [None, None, None]


async def test_stop_cancels_pending_sdi_answers(
    dovecot: Dovecot, mail_user: MailAccount, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    provider, server = await _start(
        dovecot, mail_user, sandbox_ca, ProviderConfig(consegna_delay_s=3600), tmp_path / "s.json"
    )
    box = Sandbox(mail_user, provider, server, dovecot, sandbox_ca)
    await asyncio.to_thread(box._send, _message(mail_user.user), False, None, None)
    assert provider.pending == 1
    await server.stop()
    await provider.stop()
    assert provider.pending == 0
    assert _types(box.parsed()) == [pec.PecType.ACCETTAZIONE]


class _Journal:
    """A stand-in for the sandbox log: records each event name with its fields."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def bind(self, **_: object) -> _Journal:
        return self

    def _record(self, event: str, **fields: object) -> None:
        self.events.append((event, fields))

    info = warning = error = _record

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


async def test_client_hanging_up_right_after_data_still_gets_consegna_and_sdi_answer(
    dovecot: Dovecot, mail_user: MailAccount, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    """The ACCETTAZIONE is being filed when the client hangs up (which cancels aiosmtpd's handler):
    the message is the provider's by then, so CONSEGNA and SDI's answer still follow."""
    gate, handler_cancelled, depositing = asyncio.Event(), asyncio.Event(), threading.Event()

    async def deposit(raw: bytes) -> None:
        depositing.set()
        await gate.wait()
        await asyncio.to_thread(dovecot.imap_append, mail_user.user, raw)

    journal = _Journal()
    simulator = SdiSimulator(
        signer=_signer(sandbox_ca),
        schemas=None,
        config=SimulatorConfig(),
        state_path=tmp_path / "s",
    )
    provider = PecProvider(
        user=mail_user.user, ca=sandbox_ca, deposit=deposit, simulator=simulator, log=journal
    )

    async def on_submission(submission: Submission) -> str | None:
        try:
            return await provider.submit(submission)
        except asyncio.CancelledError:
            handler_cancelled.set()
            raise

    tls = server_tls_context(sandbox_ca.server.cert_path, sandbox_ca.server.key_path)
    server = SubmissionServer(
        {mail_user.user: mail_user.password},
        tls,
        on_submission,
        hostname="smtps.pec.sandbox.test",
        data_size_limit=2**20,
    )
    await server.start()
    box = Sandbox(mail_user, provider, server, dovecot, sandbox_ca)

    def send_and_hang_up() -> int:
        raw = _message(mail_user.user).as_bytes(policy=policy.SMTP)
        smtp = smtplib.SMTP_SSL("127.0.0.1", server.port, context=box.context(), timeout=10)
        smtp.login(mail_user.user, mail_user.password)
        smtp.mail(mail_user.user)
        smtp.rcpt(SDI)
        code, _ = smtp.docmd("DATA")
        smtp.send(raw + b".\r\n")
        assert depositing.wait(10)
        smtp.close()  # without reading the reply
        return code

    try:
        assert await asyncio.to_thread(send_and_hang_up) == 354
        await asyncio.wait_for(handler_cancelled.wait(), 10)
        gate.set()
        await provider.idle()
        messages = box.parsed()
    finally:
        await server.stop()
        await provider.stop()
    assert _types(messages) == [
        pec.PecType.ACCETTAZIONE,
        pec.PecType.AVVENUTA_CONSEGNA,
        pec.PecType.POSTA_CERTIFICATA,
    ]
    assert messages[1].riferimento_message_id == OUR_ID
    names = journal.names()
    for step in (
        "provider_submission_received",
        "provider_accepted",
        "provider_client_gone",
        "provider_receipt_filed",
        "provider_delivery_queued",
        "provider_delivered",
        "sdi_answer_queued",
        "sdi_message_delivered",
    ):
        assert step in names, f"{step} missing from the journal: {names}"
    assert "provider_task_failed" not in names


# ---- the queue on disk: a restart loses nothing the provider accepted -------------------------------

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _at(when: datetime) -> Callable[[], datetime]:
    return lambda: when


def box_tls(ca: SandboxCA) -> ssl.SSLContext:
    return server_tls_context(ca.server.cert_path, ca.server.key_path)


async def _restart(
    box: Sandbox, state: Path, queue: Spool, clock: Callable[[], datetime]
) -> PecProvider:
    """Stops the provider and starts a new one on the same queue and SDI memory."""
    await box.server.stop()
    await box.provider.stop()
    provider, server = await _start(
        box.dovecot, box.account, box.ca, ProviderConfig(), state, queue=queue, clock=clock
    )
    await server.stop()  # only the queue matters here
    return provider


async def test_a_delivery_not_made_before_stop_is_made_after_a_restart(
    dovecot: Dovecot, mail_user: MailAccount, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    queue, state = Spool(tmp_path / "queue"), tmp_path / "sdi.json"
    config = ProviderConfig(consegna_delay_s=3600)
    provider, server = await _start(
        dovecot, mail_user, sandbox_ca, config, state, queue=queue, clock=_at(T0)
    )
    box = Sandbox(mail_user, provider, server, dovecot, sandbox_ca)
    await asyncio.to_thread(box._send, _message(mail_user.user), False, None, None)
    later = await _restart(box, state, queue, _at(T0 + timedelta(hours=2)))
    assert _types(box.parsed()) == [pec.PecType.ACCETTAZIONE]
    assert await later.resume() == 1
    await later.idle()
    await later.stop()
    accettazione, consegna, answer = box.parsed()
    assert consegna.type is pec.PecType.AVVENUTA_CONSEGNA
    assert consegna.identificativo == accettazione.identificativo
    assert answer.type is pec.PecType.POSTA_CERTIFICATA
    assert queue.entries() == ([], [])


async def test_an_sdi_answer_not_due_before_stop_is_delivered_after_a_restart(
    dovecot: Dovecot, mail_user: MailAccount, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    queue, state = Spool(tmp_path / "queue"), tmp_path / "sdi.json"
    provider, server = await _start(
        dovecot,
        mail_user,
        sandbox_ca,
        ProviderConfig(),
        state,
        sdi=SimulatorConfig(answer_delay_s=3600),
        queue=queue,
        clock=_at(T0),
    )
    box = Sandbox(mail_user, provider, server, dovecot, sandbox_ca)
    await asyncio.to_thread(box._send, _message(mail_user.user), False, None, None)
    for _ in range(200):  # the delivery to SDI runs on; its answer is queued for an hour
        if [e for e in queue.entries()[0] if e.data["kind"] == "answer"]:
            break
        await asyncio.sleep(0.05)
    later = await _restart(box, state, queue, _at(T0 + timedelta(hours=2)))
    assert _types(box.parsed()) == [pec.PecType.ACCETTAZIONE, pec.PecType.AVVENUTA_CONSEGNA]
    assert await later.resume() == 1
    await later.idle()
    await later.stop()
    answer = box.parsed()[2]
    assert answer.type is pec.PecType.POSTA_CERTIFICATA
    assert answer.sdi_address is not None
    assert answer.sdi_address != SDI
    assert queue.entries() == ([], [])


async def test_an_unreadable_queue_entry_is_set_aside_and_the_others_are_made(
    dovecot: Dovecot, mail_user: MailAccount, sandbox_ca: SandboxCA, tmp_path: Path
) -> None:
    queue = Spool(tmp_path / "queue")
    original = Original(
        mittente=mail_user.user,
        destinatari=(mail_user.user,),
        oggetto="to myself",
        identificativo="opec-sandbox.1@pec.sandbox.test",
        msgid="<self@pec.sandbox.test>",
        raw=b"Subject: to myself\r\n\r\nbody\r\n",
    )
    data = {"kind": "delivery", "recipient": mail_user.user, "original": original_json(original)}
    queue.add(T0, data)
    queue.add(T0, {"kind": "delivery", "recipient": mail_user.user, "original": {"raw": "?"}})
    queue.add(T0, {"kind": "telegram"})
    (queue.directory / "garbage.json").write_text("{not json")
    journal = _Journal()

    async def deposit(raw: bytes) -> None:
        await asyncio.to_thread(dovecot.imap_append, mail_user.user, raw)

    provider = PecProvider(
        user=mail_user.user,
        ca=sandbox_ca,
        deposit=deposit,
        simulator=None,
        log=journal,
        queue=queue,
        clock=_at(T0),
    )
    await provider.resume()
    await provider.idle()
    await provider.stop()
    unused = SubmissionServer(
        {}, box_tls(sandbox_ca), provider.submit, hostname="x", data_size_limit=1
    )
    box = Sandbox(mail_user, provider, unused, dovecot, sandbox_ca)  # to read the mailbox
    assert _types(box.parsed()) == [pec.PecType.POSTA_CERTIFICATA, pec.PecType.AVVENUTA_CONSEGNA]
    assert queue.entries() == ([], [])
    aside = sorted(p.name for p in queue.directory.glob("*.unreadable"))
    assert len(aside) == 3
    unreadable = [f for name, f in journal.events if name == "provider_queue_entry_unreadable"]
    assert sorted(Path(str(f["file"])).name for f in unreadable) == aside


def test_an_original_survives_its_json_form() -> None:
    original = Original(
        mittente="a@pec.sandbox.test",
        destinatari=("sdi01@pec.fatturapa.it", "b@pec.example.it"),
        oggetto="IT01234567890_00001.xml",
        identificativo="opec-sandbox.2@pec.sandbox.test",
        msgid=None,
        raw=bytes(range(256)),
        risposte="r@pec.sandbox.test",
        ricevuta=TipoRicevuta.SINTETICA,
        received="Received: from x",
    )
    assert original_from_json(original_json(original)) == original
