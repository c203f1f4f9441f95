"""Every kind of message the sandbox produces reads like the real message of that kind.

The messages come from the sandbox's own provider code (PecProvider with the SDI simulator), fed to
`classify` exactly as `pecgateway inspect` does. Checked: the facts (PEC type, referenced Message-ID,
SDI address, attachment kinds) and, against the real corpus message of that kind, the MIME tree.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import make_msgid

import pytest
import structlog

from pecgateway import classify, sample
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.notification import XadesSigner
from pecgateway.sandbox.notification import signature_problem as notification_signature_problem
from pecgateway.sandbox.provider import PecProvider, ProviderConfig
from pecgateway.sandbox.simulator import SdiSimulator, SimulatorConfig
from pecgateway.sandbox.submission import Submission
from tests.conftest import CORPUS

USER = "fatture@pec.sandbox.test"
SDI = "sdi01@pec.fatturapa.it"
SDI_ADDRESS = re.compile(r"sdi\d{2}@pec\.fatturapa\.it")
INDEX = re.compile(r"\[\d+\]")
NOW = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)

Tree = tuple[str, tuple["Tree", ...]]


@dataclass(frozen=True, slots=True)
class Facts:
    """What `inspect` tells about a PEC message, abstracted from the concrete values."""

    pec_type: str | None
    refers_to_a_message_id: bool
    from_sdi: bool
    contents: tuple[str, ...]


def _facts(raw: bytes) -> Facts:
    node = classify.classify(raw, "message.eml")
    assert node.kind is classify.Kind.PEC, node.error
    assert node.pec is not None
    contents = tuple(
        child.notification.type.value if child.notification else child.kind.value
        for child in node.contents
    )
    return Facts(
        pec_type=node.pec.type.value if node.pec.type else None,
        refers_to_a_message_id=node.pec.riferimento_message_id is not None,
        from_sdi=bool(node.pec.sdi_address and SDI_ADDRESS.fullmatch(node.pec.sdi_address)),
        contents=contents,
    )


def _tree(part: Message) -> Tree:
    payload = part.get_payload()
    children = (
        tuple(_tree(child) for child in payload if isinstance(child, Message))
        if isinstance(payload, list)
        else ()
    )
    return part.get_content_type(), children


def _mime_tree(raw: bytes) -> Tree:
    return _tree(message_from_bytes(raw, policy=policy.compat32))


def _original(to: str, file_name: str, data: bytes, **headers: str) -> bytes:
    """Built like the corpus original: an HTML body and the invoice as an octet-stream."""
    message = EmailMessage()
    message["From"] = USER
    message["To"] = to
    message["Subject"] = file_name
    message["Message-ID"] = make_msgid(domain="pec.sandbox.test")
    for name, value in headers.items():
        message[name] = value
    message.set_content("<p>Invio fattura</p>", subtype="html")
    message.add_attachment(data, "application", "octet-stream", filename=file_name)
    return message.as_bytes(policy=policy.SMTP)


class Produced:
    """Runs the sandbox provider in-process and collects what it puts in the mailbox."""

    def __init__(self, ca: SandboxCA, config: ProviderConfig | None = None) -> None:
        self.mailbox: list[bytes] = []
        signer = XadesSigner(ca.sdi.key_pem, ca.sdi.cert_pem)
        self.simulator = SdiSimulator(signer=signer, schemas=None, config=SimulatorConfig())
        self.provider = PecProvider(
            user=USER,
            ca=ca,
            deposit=self._deposit,
            simulator=self.simulator,
            log=structlog.get_logger("test"),
            config=config,
            clock=lambda: NOW,
        )

    async def _deposit(self, raw: bytes) -> None:
        self.mailbox.append(raw)

    async def submit(self, raw: bytes, to: tuple[str, ...] = (SDI,)) -> list[bytes]:
        await self.provider.submit(Submission(USER, USER, to, raw))
        await self.provider.idle()
        return self.mailbox

    async def deliver(self) -> bytes:
        data = sample.fpr12(transmitter="IT09876543210", progressivo_invio="A0001")
        outgoing = self.simulator.deliver_invoice(
            recipient=USER, file_name="IT09876543210_A0001.xml", data=data, now=NOW
        )
        await self.provider.deliver(outgoing)
        return self.mailbox[-1]


def _invoice_name(progressivo: str = "00001") -> str:
    return sample.file_name(progressivo=progressivo)


async def _accettazione(ca: SandboxCA) -> bytes:
    raws = await Produced(ca).submit(_original(SDI, _invoice_name(), sample.fpr12()))
    return raws[0]


async def _consegna(ca: SandboxCA) -> bytes:
    raws = await Produced(ca).submit(_original(SDI, _invoice_name(), sample.fpr12()))
    return raws[1]


async def _rc(ca: SandboxCA) -> bytes:
    raws = await Produced(ca).submit(_original(SDI, _invoice_name(), sample.fpr12()))
    return raws[2]


async def _ns(ca: SandboxCA) -> bytes:
    raws = await Produced(ca).submit(_original(SDI, _invoice_name(), b"<FatturaElettronica"))
    return raws[2]


async def _invio_file(ca: SandboxCA) -> bytes:
    return await Produced(ca).deliver()


async def _errore_consegna(ca: SandboxCA) -> bytes:
    to = "nobody@pec.example.it"
    raws = await Produced(ca).submit(_original(to, _invoice_name(), b"x"), (to,))
    return raws[1]


async def _non_accettazione(ca: SandboxCA) -> bytes:
    raw = _original(SDI, _invoice_name(), b"x", Bcc="hidden@pec.example.it")
    return (await Produced(ca).submit(raw))[0]


async def _preavviso(ca: SandboxCA) -> bytes:
    produced = Produced(ca, ProviderConfig(preavviso_after_s=0.0))
    raws = await produced.submit(_original(SDI, _invoice_name(), sample.fpr12()))
    return raws[1]


# (producer, the facts inspect must report, the corpus message of the same kind or None)
CASES = {
    "accettazione": (
        _accettazione,
        Facts("accettazione", True, False, ()),
        "oca_ACCETTAZIONE_IT03339130126_00009.eml",
    ),
    "avvenuta-consegna": (
        _consegna,
        Facts("avvenuta-consegna", True, False, ("invoice",)),
        "oca_CONSEGNA_IT03339130126_00009.eml",
    ),
    "sdi-rc": (
        _rc,
        Facts("posta-certificata", True, True, ("RC",)),
        "oca_POSTA_CERTIFICATA_Ricevuta_di_consegna_6782414.eml",
    ),
    "sdi-ns": (_ns, Facts("posta-certificata", True, True, ("NS",)), None),
    "sdi-invio-file": (
        _invio_file,
        Facts("posta-certificata", True, True, ("MT", "invoice")),
        "oca_POSTA_CERTIFICATA_Invio_File_7339338.eml",
    ),
    "errore-consegna": (
        _errore_consegna,
        Facts("errore-consegna", True, False, ()),
        "gopec_consegna.eml",
    ),
    "non-accettazione": (
        _non_accettazione,
        Facts("non-accettazione", True, False, ()),
        None,
    ),
    "preavviso-errore-consegna": (
        _preavviso,
        Facts("preavviso-errore-consegna", True, False, ()),
        None,
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_sandbox_message_reports_the_facts_of_its_kind(
    kind: str, sandbox_ca: SandboxCA
) -> None:
    producer, expected, _ = CASES[kind]
    raw = await producer(sandbox_ca)
    assert _facts(raw) == expected


@pytest.mark.conformance
@pytest.mark.parametrize("kind", sorted(k for k, case in CASES.items() if case[2]))
async def test_sandbox_message_has_the_facts_and_mime_tree_of_the_real_one(
    kind: str, sandbox_ca: SandboxCA
) -> None:
    producer, _, corpus_name = CASES[kind]
    assert corpus_name is not None
    real_path = CORPUS / "pec" / corpus_name
    if not real_path.is_file():
        pytest.skip(f"the public corpus is absent ({real_path})")
    real = real_path.read_bytes()
    ours = await producer(sandbox_ca)
    assert _facts(ours) == _facts(real)
    assert _mime_tree(ours) == _mime_tree(real)


async def test_receipts_without_a_corpus_sample_share_the_shape_of_the_accettazione(
    sandbox_ca: SandboxCA,
) -> None:
    reference = _mime_tree(await _accettazione(sandbox_ca))
    for producer in (_non_accettazione, _preavviso, _errore_consegna):
        assert _mime_tree(await producer(sandbox_ca)) == reference


@pytest.mark.parametrize("producer", [_rc, _ns], ids=["RC", "NS"])
async def test_sdi_notification_in_the_envelope_verifies_against_the_sandbox_ca(
    producer: Callable[[SandboxCA], Awaitable[bytes]], sandbox_ca: SandboxCA
) -> None:
    node = classify.classify(await producer(sandbox_ca), "message.eml")
    (notification,) = node.contents
    assert notification_signature_problem(notification.data, sandbox_ca.ca.cert_pem) is None


def _daticert_paths(raw: bytes) -> list[str]:
    from lxml import etree

    from pecgateway import safexml

    parsed = message_from_bytes(raw, policy=policy.compat32)
    part = next(p for p in parsed.walk() if p.get_filename() == "daticert.xml")
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    root = safexml.parse(data)
    paths = []
    for element in root.iter():
        path = INDEX.sub("", etree.ElementTree(root).getpath(element))
        paths.append(f"{path} {sorted(element.attrib)}")
    return paths


@pytest.mark.conformance
@pytest.mark.parametrize(
    ("producer", "corpus_name"),
    [
        (_accettazione, "oca_ACCETTAZIONE_IT03339130126_00009.eml"),
        (_consegna, "oca_CONSEGNA_IT03339130126_00009.eml"),
        (_rc, "oca_POSTA_CERTIFICATA_Ricevuta_di_consegna_6782414.eml"),
        (_errore_consegna, "gopec_consegna.eml"),
    ],
    ids=["accettazione", "consegna", "posta-certificata", "errore-consegna"],
)
async def test_daticert_has_the_elements_and_attributes_of_the_real_one(
    producer: Callable[[SandboxCA], Awaitable[bytes]], corpus_name: str, sandbox_ca: SandboxCA
) -> None:
    real_path = CORPUS / "pec" / corpus_name
    if not real_path.is_file():
        pytest.skip(f"the public corpus is absent ({real_path})")
    ours = _daticert_paths(await producer(sandbox_ca))
    assert ours == _daticert_paths(real_path.read_bytes())
