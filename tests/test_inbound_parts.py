"""What SDI's message carries, part by part (inbound_parts.sort_parts): nothing is left out."""

from __future__ import annotations

import io
import zipfile

from pecgateway import sample
from pecgateway.classify import Node, classify
from pecgateway.filename import NotificationType
from pecgateway.inbound_parts import notification_name, sort_parts
from pecgateway.sandbox.notification import build_at_zip
from tests.factory.notifications import build_notification
from tests.factory.pecmail import Part, build_sdi_envelope

OURS = sample.file_name()
SUPPLIER = "IT09876543210_A0001.xml"


def _names(nodes: list[Node]) -> list[str | None]:
    return [n.filename for n in nodes]


def _notification(kind: NotificationType, nome_file: str = OURS) -> bytes:
    return build_notification(kind, "PA", nome_file=nome_file, identificativo_sdi="1")


def test_an_at_zip_counts_as_its_attestation_and_our_own_invoice_inside_is_not_received() -> None:
    at = _notification(NotificationType.AT)
    archive = build_at_zip(
        at_name="IT01234567890_00001_AT_001.xml",
        at_xml=at,
        invoice_name=OURS,
        invoice=sample.fpa12(),
    )
    envelope = build_sdi_envelope([Part("IT01234567890_00001_AT_001.zip", archive)])
    parts = sort_parts(classify(envelope))
    assert _names(parts.notifications) == ["IT01234567890_00001_AT_001.xml"]
    assert (parts.invoices, parts.unhandled) == ([], [])


def test_a_zip_of_invoices_counts_as_its_invoices_and_a_stranger_inside_is_unhandled() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(SUPPLIER, sample.fpr12(transmitter="IT09876543210"))
        archive.writestr("leggimi.pdf", b"%PDF-1.4 hello")
    envelope = build_sdi_envelope([Part("IT09876543210_A0001.zip", buffer.getvalue())])
    parts = sort_parts(classify(envelope))
    assert _names(parts.invoices) == [SUPPLIER]
    assert _names(parts.unhandled) == ["leggimi.pdf"]


def test_a_notification_an_invoice_its_mt_and_a_stranger_are_each_sorted() -> None:
    mt = _notification(NotificationType.MT, SUPPLIER)
    envelope = build_sdi_envelope(
        [
            Part("IT01234567890_00001_RC_001.xml", _notification(NotificationType.RC)),
            Part(SUPPLIER, sample.fpr12(transmitter="IT09876543210")),
            Part("IT09876543210_A0001_MT_001.xml", mt),
            Part("note.txt", b"hello"),
        ]
    )
    parts = sort_parts(classify(envelope))
    assert _names(parts.notifications) == ["IT01234567890_00001_RC_001.xml"]
    assert _names(parts.invoices) == [SUPPLIER]
    assert _names(parts.metadata) == ["IT09876543210_A0001_MT_001.xml"]
    assert _names(parts.unhandled) == ["note.txt"]


def test_an_mt_alone_is_unhandled() -> None:
    mt = _notification(NotificationType.MT, SUPPLIER)
    envelope = build_sdi_envelope([Part("IT09876543210_A0001_MT_001.xml", mt)])
    parts = sort_parts(classify(envelope))
    assert _names(parts.unhandled) == ["IT09876543210_A0001_MT_001.xml"]
    assert (parts.notifications, parts.invoices) == ([], [])


def test_an_unnamed_notification_is_named_from_its_nome_file_base_name_and_type() -> None:
    xml = build_notification(
        NotificationType.NS, "PA", nome_file="../../etc/IT01234567890_00009.xml.p7m"
    )
    assert notification_name(classify(xml, "part-2.bin")) == "IT01234567890_00009_NS_001.xml"
    assert notification_name(classify(xml, "ricevuta.xml")) == "ricevuta.xml"
