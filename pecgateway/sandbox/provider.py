"""The user's PEC provider in the sandbox: what happens to every message the user submits.

Owns the provider's behaviour (spec §6): formal checks → AVVISO DI NON ACCETTAZIONE, otherwise
ACCETTAZIONE; delivery to SDI (CONSEGNA from SDI's provider, then the SDI simulator) or AVVISO DI
MANCATA CONSEGNA; SDI's answers wrapped in SDI's provider envelope after their delay. Every message
goes into the user's mailbox through ``deposit``. Owns its timers: all cancelled by ``stop``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.header import decode_header, make_header
from email.message import Message
from email.utils import format_datetime
from functools import partial
from typing import Any, TypeVar

from pecgateway.errors import PecGatewayError
from pecgateway.sandbox import envelope, spool
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.envelope import Gestore, Original, TipoRicevuta
from pecgateway.sandbox.formal import addresses, formal_problems
from pecgateway.sandbox.simulator import Outgoing, SdiSimulator
from pecgateway.sandbox.submission import Submission
from pecgateway.sandbox.work import Make, WorkQueue

__all__ = [
    "SANDBOX_DOMAIN",
    "SDI_ADDRESS",
    "SDI_PEC_DOMAIN",
    "Deposit",
    "PecProvider",
    "ProviderConfig",
]

SANDBOX_DOMAIN = "pec.sandbox.test"
SDI_PEC_DOMAIN = "pec.sogei.test"
SDI_ADDRESS = re.compile(r"sdi\d{2}@pec\.fatturapa\.it", re.IGNORECASE)

Deposit = Callable[[bytes], Awaitable[None]]  # appends one raw message to the user's INBOX
Clock = Callable[[], datetime]
_T = TypeVar("_T")


def _local_now() -> datetime:
    return datetime.now().astimezone()


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """The provider's knobs; the defaults behave like a real provider, only faster."""

    gestore: str = "PEC Sandbox S.p.A."
    domain: str = SANDBOX_DOMAIN
    sdi_gestore: str = "Sogei SpA (sandbox)"
    sdi_domain: str = SDI_PEC_DOMAIN
    max_message_bytes: int = 30 * 1024 * 1024
    consegna_delay_s: float = 0.0
    # tests: when set, messages to SDI get stuck: a preavviso-errore-consegna after this many
    # seconds, an errore-consegna (5.4.1) after twice as many, and SDI never sees them
    preavviso_after_s: float | None = None


class PecProvider:
    """One user's provider: ``submit`` handles a submission, ``deliver`` an SDI message to them."""

    def __init__(
        self,
        *,
        user: str,
        ca: SandboxCA,
        deposit: Deposit,
        simulator: SdiSimulator | None,
        log: Any,
        config: ProviderConfig | None = None,
        clock: Clock = _local_now,
        queue: spool.Spool | None = None,
    ) -> None:
        self.user = user.lower()
        self.config = config or ProviderConfig()
        self._gestore = Gestore(self.config.gestore, self.config.domain, ca.provider)
        self._sdi_gestore = Gestore(self.config.sdi_gestore, self.config.sdi_domain, ca.sogei)
        self._deposit = deposit
        self._simulator = simulator
        self._log = log
        self._clock = clock
        self._counter = itertools.count(1)
        self._work = WorkQueue(log=log, clock=clock, spool=queue)
        self._sdi_lock = asyncio.Lock()

    # ---- the provider's work ---------------------------------------------------------------------

    async def resume(self) -> int:
        """Schedules what an earlier run left in the queue on disk; returns how many items."""
        return await self._work.resume(self._replay)

    def _replay(self, data: dict[str, Any]) -> tuple[Make, str]:
        if data.get("kind") == "delivery":
            original = spool.original_from_json(data["original"])
            parsed = message_from_bytes(original.raw, policy=policy.compat32)
            recipient = str(data["recipient"])
            return partial(self._deliver, original, parsed, recipient), f"deliver {recipient}"
        if data.get("kind") == "answer":
            sender, message = spool.answer_from_json(data)
            answer = Outgoing(0.0, sender, message)
            return partial(self._hand_over, answer), f"sdi answer from {sender}"
        raise ValueError(f"unknown kind {data.get('kind')!r}")

    async def stop(self) -> None:
        """Cancels the deliveries and SDI answers not due yet (with a queue on disk, they are made
        at the next start) and waits for the work already begun."""
        await self._work.stop()

    @property
    def pending(self) -> int:
        return self._work.pending

    async def idle(self) -> None:
        """Waits until nothing is scheduled (tests with near-zero delays use it)."""
        await self._work.idle()

    async def sdi_call(self, function: Callable[..., _T], **kwargs: Any) -> _T:
        """Runs a simulator method in a worker thread (XSD checks take a while), one at a time."""
        async with self._sdi_lock:
            return await asyncio.to_thread(function, **kwargs)

    # ---- identifiers ---------------------------------------------------------------------------

    def _identificativo(self, domain: str, now: datetime) -> str:
        n = next(self._counter)
        return f"opec-sandbox.{now:%Y%m%d%H%M%S}.{os.getpid():05d}.{n:04d}.1.{n % 97}@{domain}"

    def _received(self, submission: Submission, now: datetime) -> str:
        return (
            f"Received: from [127.0.0.1] by smtps.{self.config.domain} (pecgateway sandbox) "
            f"with ESMTPSA for <{submission.rcpt_tos[0] if submission.rcpt_tos else ''}>; "
            f"{format_datetime(now)}"
        )

    # ---- the user's submissions ----------------------------------------------------------------

    async def submit(self, submission: Submission) -> str | None:
        """The provider's handling of one submitted message; returns the SMTP reply (None: 250).

        Once the checks are done, the message is the provider's: its receipt and its deliveries
        run as the provider's own tasks, so a client that hangs up before the reply (which cancels
        this call) changes nothing. The reply comes once the receipt is in the user's mailbox."""
        now = self._clock()
        parsed = message_from_bytes(submission.data, policy=policy.compat32)
        original = self._original(submission, parsed, now)
        self._log.info(
            "provider_submission_received",
            login=submission.login,
            mail_from=submission.mail_from,
            recipients=original.destinatari,
            subject=original.oggetto,
            msgid=original.msgid,
            size=len(submission.data),
        )
        problems = formal_problems(
            submission, parsed, account=self.user, max_bytes=self.config.max_message_bytes
        )
        if problems:
            work = self._refuse(original, now, "; ".join(problems))
        else:
            work = self._accept(original, parsed, now)
        task = self._work.step(work, f"{'accept' if not problems else 'refuse'} {original.msgid}")
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            self._log.warning(
                "provider_client_gone",
                msgid=original.msgid,
                identificativo=original.identificativo,
                reason="the client hung up before the SMTP reply; the message is handled anyway",
            )
            raise
        except (PecGatewayError, OSError) as exc:  # logged by _finished
            return f"451 4.3.0 the provider could not file its receipt ({exc}); try again"
        return None

    async def _refuse(self, original: Original, now: datetime, reason: str) -> None:
        self._log.warning(
            "provider_not_accepted", subject=original.oggetto, reason=reason, msgid=original.msgid
        )
        await self._deposit(envelope.build_non_accettazione(self._gestore, original, now, reason))
        self._log.info("provider_receipt_filed", tipo="non-accettazione", msgid=original.msgid)

    async def _accept(self, original: Original, parsed: Message, now: datetime) -> None:
        """ACCETTAZIONE into the mailbox, then one delivery per recipient (the provider's tasks)."""
        self._log.info(
            "provider_accepted",
            subject=original.oggetto,
            msgid=original.msgid,
            identificativo=original.identificativo,
            recipients=original.destinatari,
        )
        await self._deposit(envelope.build_accettazione(self._gestore, original, now))
        self._log.info(
            "provider_receipt_filed",
            tipo="accettazione",
            msgid=original.msgid,
            identificativo=original.identificativo,
        )
        delay_s = self.config.consegna_delay_s
        for recipient in original.destinatari:
            data = {"recipient": recipient, "original": spool.original_json(original)}
            entry = self._work.later(
                delay_s,
                partial(self._deliver, original, parsed, recipient),
                f"deliver {recipient}",
                {"kind": "delivery", **data},
            )
            self._log.info(
                "provider_delivery_queued",
                recipient=recipient,
                identificativo=original.identificativo,
                after_s=delay_s,
                queue_file=str(entry) if entry else None,
            )

    def _original(self, submission: Submission, parsed: Message, now: datetime) -> Original:
        requested = str(parsed.get("X-TipoRicevuta", "completa")).strip().lower()
        ricevuta = next((t for t in TipoRicevuta if t.value == requested), TipoRicevuta.COMPLETA)
        reply_to = addresses(parsed, "Reply-To")
        return Original(
            mittente=submission.login.lower(),
            destinatari=tuple(r.lower() for r in submission.rcpt_tos),
            oggetto=_subject(parsed),
            identificativo=self._identificativo(self.config.domain, now),
            msgid=_message_id(parsed),
            raw=submission.data,
            risposte=reply_to[0] if reply_to else None,
            ricevuta=ricevuta,
            received=self._received(submission, now),
        )

    async def _deliver(self, original: Original, parsed: Message, recipient: str) -> None:
        if SDI_ADDRESS.fullmatch(recipient):
            await self._deliver_to_sdi(original, parsed, recipient)
        elif recipient == self.user:
            await self._deliver_to_self(original)
        else:
            self._log.warning(
                "provider_delivery_failed",
                recipient=recipient,
                errore="no-dest",
                reason="no such PEC mailbox in the sandbox (only SDI and yourself)",
            )
            await self._deposit(
                envelope.build_errore_consegna(self._gestore, original, recipient, self._clock())
            )

    async def _deliver_to_self(self, original: Original) -> None:
        now = self._clock()
        await self._deposit(envelope.build_posta_certificata(self._gestore, original, now))
        await self._deposit(envelope.build_consegna(self._gestore, original, self.user, now))
        self._log.info(
            "provider_delivered", recipient=self.user, identificativo=original.identificativo
        )

    async def _deliver_to_sdi(self, original: Original, parsed: Message, recipient: str) -> None:
        if self.config.preavviso_after_s is not None:
            await self._stuck(original, recipient, self.config.preavviso_after_s)
            return
        now = self._clock()
        await self._deposit(envelope.build_consegna(self._sdi_gestore, original, recipient, now))
        self._log.info(
            "provider_delivered",
            recipient=recipient,
            identificativo=original.identificativo,
            ricevuta=original.ricevuta.value,
        )
        if self._simulator is None:
            return
        answers = await self.sdi_call(
            self._simulator.receive,
            sender=original.mittente,
            recipient=recipient,
            message=parsed,
            identificativo=original.identificativo,
            now=now,
        )
        for answer in answers:
            entry = self._work.later(
                answer.delay_s,
                partial(self._hand_over, answer),
                f"sdi answer from {answer.sender}",
                {"kind": "answer", **spool.answer_json(answer.sender, answer.message)},
            )
            self._log.info(
                "sdi_answer_queued",
                sender=answer.sender,
                subject=str(answer.message.get("Subject", "")),
                after_s=answer.delay_s,
                queue_file=str(entry) if entry else None,
            )

    async def _stuck(self, original: Original, recipient: str, after_s: float) -> None:
        self._log.warning(
            "provider_delivery_stuck",
            recipient=recipient,
            after_s=after_s,
            reason="preavviso_after_s is set: SDI's provider never confirms",
        )
        await asyncio.sleep(after_s)
        await self._deposit(
            envelope.build_preavviso_errore_consegna(
                self._gestore, original, recipient, self._clock()
            )
        )
        self._log.info(
            "provider_receipt_filed",
            tipo="preavviso-errore-consegna",
            identificativo=original.identificativo,
        )
        await asyncio.sleep(after_s)
        text = f"5.4.1 - {self._gestore.name} - il messaggio non è stato consegnato nelle 24 ore"
        await self._deposit(
            envelope.build_errore_consegna(
                self._gestore,
                original,
                recipient,
                self._clock(),
                errore="altro",
                errore_esteso=text,
            )
        )
        self._log.info(
            "provider_receipt_filed", tipo="errore-consegna", identificativo=original.identificativo
        )

    # ---- SDI's messages to the user ------------------------------------------------------------

    async def _hand_over(self, answer: Outgoing) -> None:
        await self.deliver(answer)

    async def deliver(self, outgoing: Outgoing) -> str:
        """Wraps SDI's inner message in SDI's provider envelope and deposits it now.

        Returns the envelope's identificativo."""
        now = self._clock()
        message = outgoing.message
        if message.get("X-TipoRicevuta") is None:
            message["X-TipoRicevuta"] = "breve"
        original = Original(
            mittente=outgoing.sender,
            destinatari=(self.user,),
            oggetto=str(message.get("Subject", "")),
            identificativo=self._identificativo(self.config.sdi_domain, now),
            msgid=_message_id(message),
            raw=message.as_bytes(policy=policy.SMTP),
            risposte=outgoing.sender,
            ricevuta=TipoRicevuta.BREVE,
        )
        await self._deposit(envelope.build_posta_certificata(self._sdi_gestore, original, now))
        self._log.info(
            "sdi_message_delivered",
            sender=outgoing.sender,
            subject=original.oggetto,
            identificativo=original.identificativo,
        )
        return original.identificativo


def _subject(parsed: Message) -> str:
    value = parsed.get("Subject")
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (UnicodeError, LookupError, ValueError):
        return str(value).strip()


def _message_id(parsed: Message) -> str | None:
    found = re.search(r"<[^<>\s]+>", str(parsed.get("Message-ID", "")))
    return found.group(0) if found else None
