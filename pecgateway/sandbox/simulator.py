"""The sandbox's SDI: what SDI answers to a file received over PEC, and how it delivers invoices.

Owns SDI's decisions (address assignment, the outcome per flow; the file checks are ``checks``) and
keeps its memory (``sdimemory``: addresses, used names, accepted invoices, counters). Returns SDI's
inner messages with their delays; the PEC envelope, the timing and the mailbox belong to others.

Outcome rules for a file that passes the checks (the README quotes this table):

| flow | CodiceDestinatario                      | SDI answers (delays: SimulatorConfig)           |
|------|-----------------------------------------|-------------------------------------------------|
| B2B  | not 0000000, or a PECDestinatario given | RC                                              |
| B2B  | 0000000 and no PECDestinatario          | MC (RicevutaImpossibilitaRecapito); then RC     |
|      |                                         | after ``rc_after_mc_s`` when that is set        |
| PA   | 999999                                  | MC, then AT (``_AT_nnn.zip``) after at_delay_s  |
| PA   | ending in R                             | RC, then NE EC02 (refused), pa_outcome_delay_s  |
| PA   | ending in X                             | RC, then DT (no answer) after dt_delay_s        |
| PA   | anything else                           | RC, then NE EC01 (accepted), pa_outcome_delay_s |

The file checks (00001 ... 00404, one NS per file, first failure wins) are ``checks``; an EC02
refusal frees the invoice's seller, year, number and type for 00404 again.

Addresses: a sender's first file goes to sdi01; SDI's first answer comes from the sdiNN it assigns.
Files sent to sdi01 are still answered for ``first_address_grace_s`` seconds after that first answer
(a sender that sent several files in one go could not know sdiNN yet); after that only sdiNN is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage, Message
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from pecgateway import filename, invoice, p7m
from pecgateway.errors import MalformedMessage
from pecgateway.sandbox import checks, sdimail, sdimemory
from pecgateway.sandbox import notification as nt

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from pecgateway.schema import SchemaSet

__all__ = ["FIRST_ADDRESS", "SDI_DOMAIN", "Outgoing", "SdiSimulator", "SimulatorConfig"]

SDI_DOMAIN = sdimail.SDI_DOMAIN
FIRST_ADDRESS = f"sdi01@{SDI_DOMAIN}"
_MC_B2B = "La fattura e' a disposizione del cessionario/committente nella sua area riservata."
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message SDI sends ``delay_s`` seconds after the call that produced it."""

    delay_s: float
    sender: str  # sdiNN@pec.fatturapa.it
    message: EmailMessage  # SDI's inner message (the PEC envelope is added by SDI's provider)


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Delays in seconds (tests: 0, demo: a few), the optional B2B RC after an MC, and how long
    sdi01 is still answered after SDI's first answer named the sender's sdiNN."""

    answer_delay_s: float = 0.0
    pa_outcome_delay_s: float = 0.0
    dt_delay_s: float = 0.0
    at_delay_s: float = 0.0
    rc_after_mc_s: float | None = None
    max_file_bytes: int = 5 * 1024 * 1024
    first_address_grace_s: float = 60.0


@dataclass(slots=True)
class _File:
    """One received file and what SDI knows of it while answering."""

    name: str
    data: bytes
    header: nt.Header
    stem: str
    address: str
    recipient: str
    received: datetime
    counter: int = 0
    facts: invoice.Invoice | None = None


def _address(value: str) -> str:
    return parseaddr(value)[1].strip().lower()


def _candidate_address(sender: str) -> str:
    """sdi02 ... sdi99, stable for a sender (a hash, so every sandbox agrees)."""
    number = 2 + int(hashlib.sha256(sender.encode()).hexdigest(), 16) % 98
    return f"sdi{number:02d}@{SDI_DOMAIN}"


def _attachments(message: Message) -> list[tuple[str, bytes]]:
    found = []
    for part in message.walk():
        name = part.get_filename()
        if name is None or part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        found.append((name, payload if isinstance(payload, bytes) else b""))
    return found


class SdiSimulator:
    """SDI behind ``sdi01@pec.fatturapa.it``: checks each file and answers like SDI (module doc)."""

    def __init__(
        self,
        *,
        signer: nt.XadesSigner,
        schemas: SchemaSet | None,
        config: SimulatorConfig,
        log: FilteringBoundLogger | None = None,
        state_path: Path | None = None,
    ) -> None:
        self._signer = signer
        self._schemas = schemas
        self._config = config
        self._log: Any = log if log is not None else structlog.get_logger("sdi")
        self._state_path = state_path
        self._state = sdimemory.Memory({}, set(), set())
        if state_path is not None and state_path.exists():
            self._state = sdimemory.load(state_path)

    # ---- memory --------------------------------------------------------------------------------

    def _save(self) -> None:
        if self._state_path is not None:
            sdimemory.save(self._state, self._state_path)

    def _next_identificativo(self) -> str:
        self._state.last_identificativo_sdi += 1
        return str(self._state.last_identificativo_sdi)

    def _next_message_id(self) -> str:
        self._state.last_message_id += 1
        return str(self._state.last_message_id)

    def address_for(self, user: str) -> str:
        """The sdiNN address assigned to ``user``, or the one SDI would assign on its first answer."""
        user = _address(user)
        return self._state.assigned.get(user) or _candidate_address(user)

    def received(self, nome_file: str) -> bool:
        """Whether SDI has received a file of this name (its stem, any case or extension)."""
        return filename.invoice_stem(nome_file).lower() in self._state.used_names

    def move_address(self, *, user: str, address: str, now: datetime, reason: str) -> bool:
        """SDI writes to ``user`` from ``address`` from now on and expects files there (True when
        that changed): real SDI may move a sender to another sdiNN, and the sender follows it."""
        user, address = _address(user), _address(address)
        old = self._state.assigned.get(user)
        if old == address:
            return False
        self._state.assigned[user] = address
        self._state.announced.setdefault(user, now.isoformat())
        self._log.warning("sdi_address_moved", sender=user, old=old, new=address, reason=reason)
        self._save()
        return True

    # ---- receiving -----------------------------------------------------------------------------

    def receive(
        self, *, sender: str, recipient: str, message: Message, identificativo: str, now: datetime
    ) -> list[Outgoing]:
        """SDI's answers to one PEC message from ``sender`` (one outcome per attached file)."""
        user, to = _address(sender), _address(recipient)
        files = _attachments(message)
        self._log.info("sdi_received", sender=user, recipient=to, files=[n for n, _ in files])
        expected = self._state.assigned.get(user, FIRST_ADDRESS)
        if to != expected and not self._still_first_address(user, to, now):
            self._log.warning(
                "sdi_ignored_wrong_address",
                sender=user,
                expected=expected,
                got=to,
                reason="SDI answers only files sent to the address it assigned to the sender",
            )
            return []
        if not files:
            self._log.warning("sdi_ignored_no_file", sender=user, reason="no attachment")
            return []
        address = self._assign(user)
        outgoing = [
            out
            for name, data in files
            for out in self._answer(self._file(name, data, user, address, identificativo, now))
        ]
        if outgoing:
            first = now + timedelta(seconds=min(out.delay_s for out in outgoing))
            self._state.announced.setdefault(user, first.isoformat())
        self._save()
        return sorted(outgoing, key=lambda out: out.delay_s)

    def _still_first_address(self, user: str, to: str, now: datetime) -> bool:
        """sdi01 keeps working until ``first_address_grace_s`` after SDI's first answer (module doc)."""
        if to != FIRST_ADDRESS:
            return False
        announced = self._state.announced.get(user)
        if announced is None:
            return True
        grace = timedelta(seconds=self._config.first_address_grace_s)
        return now < datetime.fromisoformat(announced) + grace

    def _assign(self, user: str) -> str:
        if user not in self._state.assigned:
            self._state.assigned[user] = _candidate_address(user)
            self._log.info("sdi_assigned_address", sender=user, address=self._state.assigned[user])
        return self._state.assigned[user]

    def _file(
        self, name: str, data: bytes, user: str, address: str, pec_id: str, now: datetime
    ) -> _File:
        header = nt.Header(
            identificativo_sdi=self._next_identificativo(),
            nome_file=name[:50],
            message_id="",
            pec_message_id=pec_id,
            data_ora_ricezione=now,
            hash=hashlib.sha256(data).hexdigest(),
        )
        stem = _UNSAFE.sub("_", filename.invoice_stem(name))[:36] or "file"
        return _File(name, data, header, stem, address, user, now)

    def _answer(self, file: _File) -> list[Outgoing]:
        problem = self._check(file)
        if problem is not None:
            self._log.warning(
                "sdi_rejected",
                file=file.name,
                identificativo_sdi=file.header.identificativo_sdi,
                codice=problem.codice,
                reason=problem.descrizione,
            )
            facts = file.facts or _read_invoice(file.data)
            flow = facts.flow if facts else "B2B"
            xml = nt.build_ns(self._header(file, 0.0), flow=flow, errori=[problem])
            return [self._notify(file, "NS", xml, self._config.answer_delay_s)]
        assert file.facts is not None
        self._state.accepted |= checks.invoice_keys(file.facts)
        if file.facts.flow == "PA":
            return self._answer_pa(file, file.facts)
        return self._answer_b2b(file, file.facts)

    def _check(self, file: _File) -> nt.Errore | None:
        """The first failed check (see checks); the invoice read on the way goes to ``file.facts``."""
        verdict = checks.check(
            file.name,
            file.data,
            stem=file.stem,
            used_names=self._state.used_names,
            accepted=self._state.accepted,
            schemas=self._schemas,
            max_file_bytes=self._config.max_file_bytes,
        )
        file.facts = verdict.facts
        return verdict.problem

    # ---- outcomes ------------------------------------------------------------------------------

    def _answer_b2b(self, file: _File, facts: invoice.Invoice) -> list[Outgoing]:
        delay = self._config.answer_delay_s
        codice = facts.codice_destinatario or "0000000"
        if codice != "0000000" or facts.pec_destinatario:
            return [self._rc(file, "B2B", codice, delay)]
        self._log.info("sdi_not_delivered", file=file.name, reason="0000000 without PEC")
        xml = nt.build_mc(self._header(file, delay), flow="B2B", descrizione=_MC_B2B)
        answers = [self._notify(file, "MC", xml, delay)]
        if self._config.rc_after_mc_s is not None:
            answers.append(self._rc(file, "B2B", codice, delay + self._config.rc_after_mc_s))
        return answers

    def _answer_pa(self, file: _File, facts: invoice.Invoice) -> list[Outgoing]:
        config, codice = self._config, facts.codice_destinatario or "999999"
        delay = config.answer_delay_s
        if codice == "999999":
            self._log.info("sdi_not_delivered", file=file.name, reason="codice ufficio 999999")
            xml = nt.build_mc(
                self._header(file, delay), flow="PA", descrizione="Destinatario non raggiungibile"
            )
            return [self._notify(file, "MC", xml, delay), self._at(file, codice, delay)]
        answers = [self._rc(file, "PA", codice, delay)]
        if codice.endswith("X"):
            at = delay + config.dt_delay_s
            self._log.info("sdi_terms_expired", file=file.name, after_s=at)
            xml = nt.build_dt(self._header(file, at), **self._riferimento(facts))
            return [*answers, self._notify(file, "DT", xml, at)]
        esito = "EC02" if codice.endswith("R") else "EC01"
        if esito == "EC02":
            self._state.accepted -= checks.invoice_keys(facts)
        at = delay + config.pa_outcome_delay_s
        self._log.info("sdi_outcome", file=file.name, esito=esito, after_s=at)
        xml = nt.build_ne(self._header(file, at), esito=esito, **self._riferimento(facts))
        return [*answers, self._notify(file, "NE", xml, at)]

    @staticmethod
    def _riferimento(facts: invoice.Invoice) -> dict[str, str | None]:
        doc = facts.documents[0] if facts.documents else None
        numero = doc.numero if doc and doc.numero and doc.numero.isascii() else None
        anno = (doc.data or "")[:4] if doc else ""
        return {"numero_fattura": numero, "anno_fattura": anno if anno.isdigit() else None}

    def _rc(self, file: _File, flow: str, codice: str, delay: float) -> Outgoing:
        self._log.info("sdi_delivered", file=file.name, codice_destinatario=codice, after_s=delay)
        xml = nt.build_rc(
            self._header(file, delay),
            flow=flow,
            data_ora_consegna=file.received + timedelta(seconds=delay),
            codice_destinatario=codice,
            descrizione_destinatario=f"Destinatario {codice}",
        )
        return self._notify(file, "RC", xml, delay)

    def _at(self, file: _File, codice: str, mc_delay: float) -> Outgoing:
        delay = mc_delay + self._config.at_delay_s
        self._log.info("sdi_attested", file=file.name, after_s=delay)
        header = self._header(file, delay)
        file.counter += 1
        at_name = f"{file.stem}_AT_{file.counter:03d}"
        at_xml = self._signer.sign(
            nt.build_at(header, codice_destinatario=codice, descrizione_destinatario="PA di prova"),
            signing_time=file.received + timedelta(seconds=delay),
        )
        archive = nt.build_at_zip(
            at_name=at_name + ".xml", at_xml=at_xml, invoice_name=file.name, invoice=file.data
        )
        message = self._message(file, "AT", [(at_name + ".zip", archive, "base64")], delay)
        return Outgoing(delay, file.address, message)

    def _header(self, file: _File, delay: float) -> nt.Header:
        base = file.header
        return nt.Header(
            base.identificativo_sdi,
            base.nome_file,
            self._next_message_id(),
            base.pec_message_id,
            base.data_ora_ricezione,
            base.hash,
        )

    def _notify(self, file: _File, kind: str, xml: bytes, delay: float) -> Outgoing:
        signed = self._signer.sign(xml, signing_time=file.received + timedelta(seconds=delay))
        file.counter += 1
        name = f"{file.stem}_{kind}_{file.counter:03d}.xml"
        message = self._message(file, kind, [(name, signed, "quoted-printable")], delay)
        return Outgoing(delay, file.address, message)

    def _message(
        self, file: _File, kind: str, parts: list[sdimail.Part], delay: float
    ) -> EmailMessage:
        return sdimail.answer(
            kind,
            sender=file.address,
            to=file.recipient,
            nome_file=file.header.nome_file,
            identificativo_sdi=file.header.identificativo_sdi,
            when=file.received + timedelta(seconds=delay),
            parts=parts,
        )

    # ---- delivering supplier invoices ----------------------------------------------------------

    def deliver_invoice(
        self, *, recipient: str, file_name: str, data: bytes, now: datetime
    ) -> Outgoing:
        """A supplier's invoice as SDI delivers it: ``Invio File <IdSdI>`` with the file and its MT."""
        user = _address(recipient)
        facts = _read_invoice(data)
        flow = facts.flow if facts else "B2B"
        codice = facts.codice_destinatario if facts else None
        identificativo = self._next_identificativo()
        metadata = nt.build_mt(
            flow=flow,
            identificativo_sdi=identificativo,
            nome_file=file_name[:50],
            hash=hashlib.sha256(data).hexdigest(),
            codice_destinatario=codice
            if codice and re.fullmatch(r"[A-Z0-9]{6,7}", codice)
            else "0000000",
            formato=facts.format if facts else "FPR12",
            message_id=self._next_message_id(),
        )
        stem = _UNSAFE.sub("_", filename.invoice_stem(file_name))[:36] or "file"
        binary = file_name.lower().endswith((".p7m", ".pk7"))
        parts = [
            (f"{stem}_MT_001.xml", metadata, "7bit"),
            (file_name, data, "base64" if binary else "quoted-printable"),
        ]
        address = self._assign(user)  # the recipient now knows this sdiNN: it is the assigned one
        self._state.announced.setdefault(user, now.isoformat())
        message = sdimail.invio_file(
            sender=address,
            to=user,
            file_name=file_name,
            identificativo_sdi=identificativo,
            when=now,
            parts=parts,
        )
        self._log.info("sdi_invoice_delivered", file=file_name, recipient=user, sender=address)
        self._save()
        return Outgoing(0.0, address, message)


def _read_invoice(data: bytes) -> invoice.Invoice | None:
    try:
        payload = p7m.unwrap(data).payload if p7m.looks_like_envelope(data) else data
        return invoice.parse(payload)
    except MalformedMessage:
        return None
