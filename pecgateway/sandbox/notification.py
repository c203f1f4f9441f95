"""The sandbox's SDI notifications: the XML files SDI attaches to its messages, and their signature.

Builds RC, NS, MC, NE, DT, AT (and its zip) and MT in the namespace and root element of each flow
(PA: MessaggiTypes 1.1, B2B: MessaggiFatturaTypes 1.0), shaped like the real ones (prefixed root,
unqualified children), and signs them XAdES-BES enveloped as SDI does. Decides nothing: see simulator.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod
from signxml.exceptions import SignXMLException
from signxml.xades.xades import XAdESSignatureConfiguration, XAdESVerifier

from pecgateway import safexml
from pecgateway.errors import MalformedMessage

__all__ = [
    "NS_B2B",
    "NS_PA",
    "Errore",
    "Header",
    "XadesSigner",
    "build_at",
    "build_at_zip",
    "build_dt",
    "build_mc",
    "build_mt",
    "build_ne",
    "build_ns",
    "build_rc",
    "format_datetime",
    "signature_problem",
    "verify",
]

NS_PA = "http://www.fatturapa.gov.it/sdi/messaggi/v1.0"
NS_B2B = "http://ivaservizi.agenziaentrate.gov.it/docs/xsd/fattura/messaggi/v1.0"
_DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES = "http://uri.etsi.org/01903/v1.3.2#"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
_ROME = ZoneInfo("Europe/Rome")
_DESCRIZIONE_MAX = {"PA": 255, "B2B": 1000}

# A child is (name, text) or (name, children) or (name, None) to leave it out.
_Value = str | list[tuple[str, "_Value | None"]]
_Fields = list[tuple[str, _Value | None]]


@dataclass(frozen=True, slots=True)
class Header:
    """What every notification about one received file says: SDI's ids and the file's."""

    identificativo_sdi: str
    nome_file: str
    message_id: str
    pec_message_id: str | None
    data_ora_ricezione: datetime
    hash: str  # SHA-256 hex of the file as received
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Errore:
    """One entry of ListaErrori: the SDI code (00001 ...), its description and a hint (B2B only)."""

    codice: str
    descrizione: str
    suggerimento: str = ""


def format_datetime(value: datetime) -> str:
    """SDI's ``2018-11-13T16:47:26.000+01:00``: milliseconds, Rome offset (naive means UTC)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(_ROME).isoformat(timespec="milliseconds")


def _children(parent: etree._Element, fields: _Fields) -> None:
    for name, value in fields:
        if value is None:
            continue
        child = etree.SubElement(parent, name)
        if isinstance(value, str):
            child.text = value
        else:
            _children(child, value)


def _document(flow: str, root_name: str, fields: _Fields) -> bytes:
    namespace = NS_PA if flow == "PA" else NS_B2B
    root = etree.Element(f"{{{namespace}}}{root_name}", nsmap={"ns3": namespace, "ns2": _DS})
    root.set("versione", "1.0")
    root.text = "\n    "
    _children(root, fields)
    for child in root:
        child.tail = "\n    "
    if len(root):
        root[-1].tail = "\n"
    return b'<?xml version="1.0" encoding="UTF-8"?>' + etree.tostring(root, encoding="UTF-8")


def _descrizione(flow: str, text: str) -> str:
    return text[: _DESCRIZIONE_MAX[flow]]


def _hash_if_b2b(flow: str, header: Header) -> str | None:
    return header.hash if flow == "B2B" else None


def _tail(header: Header) -> _Fields:
    return [
        ("MessageId", header.message_id),
        ("PecMessageId", header.pec_message_id),
        ("Note", header.note),
    ]


def build_rc(
    header: Header,
    *,
    flow: str,
    data_ora_consegna: datetime,
    codice_destinatario: str,
    descrizione_destinatario: str,
) -> bytes:
    """RicevutaConsegna (both flows), unsigned: sign it with ``XadesSigner.sign``."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("DataOraConsegna", format_datetime(data_ora_consegna)),
        (
            "Destinatario",
            [("Codice", codice_destinatario), ("Descrizione", descrizione_destinatario)],
        ),
    ]
    return _document(flow, "RicevutaConsegna", fields + _tail(header))


def _errore(flow: str, errore: Errore) -> _Value:
    entry: _Fields = [
        ("Codice", errore.codice),
        ("Descrizione", _descrizione(flow, errore.descrizione)),
    ]
    if flow == "B2B":
        entry.append(("Suggerimento", errore.suggerimento[:2000]))
    return entry


def build_ns(header: Header, *, flow: str, errori: Sequence[Errore]) -> bytes:
    """NotificaScarto (PA) / RicevutaScarto (B2B) with 1-200 errors, unsigned."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("ListaErrori", [("Errore", _errore(flow, errore)) for errore in errori[:200]]),
    ]
    root = "NotificaScarto" if flow == "PA" else "RicevutaScarto"
    return _document(flow, root, fields + _tail(header))


def build_mc(
    header: Header,
    *,
    flow: str,
    descrizione: str,
    data_messa_a_disposizione: date | None = None,
) -> bytes:
    """NotificaMancataConsegna (PA) / RicevutaImpossibilitaRecapito (B2B, with the date), unsigned."""
    b2b = flow == "B2B"
    available = (data_messa_a_disposizione or header.data_ora_ricezione.date()).isoformat()
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("Hash", _hash_if_b2b(flow, header)),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        ("DataMessaADisposizione", available if b2b else None),
        ("Descrizione", _descrizione(flow, descrizione)),
    ]
    root = "RicevutaImpossibilitaRecapito" if b2b else "NotificaMancataConsegna"
    return _document(flow, root, fields + _tail(header))


def _riferimento_fattura(numero: str | None, anno: str | None) -> _Value | None:
    if not numero or not anno:
        return None
    return [("NumeroFattura", numero[:20]), ("AnnoFattura", anno)]


def build_ne(
    header: Header,
    *,
    esito: str,
    descrizione: str | None = None,
    numero_fattura: str | None = None,
    anno_fattura: str | None = None,
    message_id_committente: str | None = None,
) -> bytes:
    """NotificaEsito (PA only) wrapping the buyer's EsitoCommittente (EC01 / EC02), unsigned."""
    esito_committente: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("RiferimentoFattura", _riferimento_fattura(numero_fattura, anno_fattura)),
        ("Esito", esito),
        ("Descrizione", _descrizione("PA", descrizione) if descrizione else None),
        ("MessageIdCommittente", message_id_committente),
    ]
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("EsitoCommittente", esito_committente),
    ]
    xml = _document("PA", "NotificaEsito", fields + _tail(header))
    return xml.replace(b"<EsitoCommittente>", b'<EsitoCommittente versione="1.0">', 1)


def build_dt(
    header: Header,
    *,
    descrizione: str | None = None,
    numero_fattura: str | None = None,
    anno_fattura: str | None = None,
) -> bytes:
    """NotificaDecorrenzaTermini (PA only): the buyer did not answer in time, unsigned."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("RiferimentoFattura", _riferimento_fattura(numero_fattura, anno_fattura)),
        ("NomeFile", header.nome_file),
        ("Descrizione", _descrizione("PA", descrizione) if descrizione else None),
    ]
    return _document("PA", "NotificaDecorrenzaTermini", fields + _tail(header))


def build_at(header: Header, *, codice_destinatario: str, descrizione_destinatario: str) -> bytes:
    """AttestazioneTrasmissioneFattura (PA only), unsigned; HashFileOriginale is the header's hash."""
    fields: _Fields = [
        ("IdentificativoSdI", header.identificativo_sdi),
        ("NomeFile", header.nome_file),
        ("DataOraRicezione", format_datetime(header.data_ora_ricezione)),
        (
            "Destinatario",
            [("Codice", codice_destinatario), ("Descrizione", descrizione_destinatario)],
        ),
        *_tail(header),
        ("HashFileOriginale", header.hash),
    ]
    return _document("PA", "AttestazioneTrasmissioneFattura", fields)


def build_at_zip(*, at_name: str, at_xml: bytes, invoice_name: str, invoice: bytes) -> bytes:
    """The ``_AT_nnn.zip`` SDI sends: the original invoice file and the signed attestation."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(invoice_name, invoice)
        archive.writestr(at_name, at_xml)
    return buffer.getvalue()


def build_mt(
    *,
    flow: str,
    identificativo_sdi: str,
    nome_file: str,
    hash: str,
    codice_destinatario: str,
    formato: str,
    message_id: str,
    tentativi_invio: int = 1,
    note: str | None = None,
) -> bytes:
    """MetadatiInvioFile (PA) / FileMetadati (B2B, with Hash): never signed, as in the schemas."""
    fields: _Fields = [
        ("IdentificativoSdI", identificativo_sdi),
        ("NomeFile", nome_file),
        ("Hash", hash if flow == "B2B" else None),
        ("CodiceDestinatario", codice_destinatario),
        ("Formato", formato[:5]),
        ("TentativiInvio", str(tentativi_invio)),
        ("MessageId", message_id),
        ("Note", note),
    ]
    return _document(flow, "MetadatiInvioFile" if flow == "PA" else "FileMetadati", fields)


def _ds(parent: etree._Element, name: str, **attrib: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{_DS}}}{name}", attrib)


def _xades(parent: etree._Element, name: str, **attrib: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{_XADES}}}{name}", attrib)


def _digest_of(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _reference(
    signed_info: etree._Element, uri: str, transforms: Sequence[str], **attrib: str
) -> None:
    reference = _ds(signed_info, "Reference", **attrib, URI=uri)
    if transforms:
        holder = _ds(reference, "Transforms")
        for algorithm in transforms:
            _ds(holder, "Transform", Algorithm=algorithm)
    _ds(reference, "DigestMethod", Algorithm=_SHA256)
    _ds(reference, "DigestValue")


class XadesSigner:
    """Signs notifications XAdES-BES enveloped with SDI's structure (spec §4.5).

    exc-c14n SignedInfo, rsa-sha256, SHA-256 digests; references: the document (URI="", enveloped
    transform + exc-c14n), ``#SignedProperties_1`` (SigningTime, SigningCertificate) and ``#KeyInfoId``.
    """

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("the SDI signing key must be an RSA key (SDI signs rsa-sha256)")
        self._key = key
        self._cert = x509.load_pem_x509_certificate(cert_pem)

    def sign(self, xml: bytes, *, signing_time: datetime | None = None) -> bytes:
        """Return ``xml`` with a ``ds:Signature Id="Signature1"`` appended as the root's last child."""
        when = (signing_time or datetime.now(UTC)).astimezone(UTC)
        unsigned = etree.tostring(safexml.parse(xml), encoding="UTF-8")
        end = unsigned.rindex(b"</")
        skeleton = etree.tostring(self._skeleton(when), encoding="UTF-8")
        root = safexml.parse(unsigned[:end] + skeleton + unsigned[end:])
        signature = root[-1]
        refs = signature.findall(f"{{{_DS}}}SignedInfo/{{{_DS}}}Reference/{{{_DS}}}DigestValue")
        refs[0].text = _digest_of(_enveloped_c14n(root))
        refs[1].text = _digest_of(etree.tostring(signature[3][0][0], method="c14n"))
        refs[2].text = _digest_of(etree.tostring(signature[2], method="c14n"))
        signed_info = etree.tostring(signature[0], method="c14n", exclusive=True)
        value = self._key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
        signature[1].text = base64.b64encode(value).decode("ascii")
        return b'<?xml version="1.0" encoding="UTF-8"?>' + etree.tostring(root, encoding="UTF-8")

    def _skeleton(self, when: datetime) -> etree._Element:
        signature = etree.Element(f"{{{_DS}}}Signature", {"Id": "Signature1"}, nsmap={"ds": _DS})
        signed_info = _ds(signature, "SignedInfo")
        _ds(signed_info, "CanonicalizationMethod", Algorithm=_EXC_C14N)
        _ds(signed_info, "SignatureMethod", Algorithm=_RSA_SHA256)
        _reference(signed_info, "", (_ENVELOPED, _EXC_C14N), Id="reference-document")
        # "propeties" is how SDI spells this Id in its real notifications.
        _reference(
            signed_info,
            "#SignedProperties_1",
            (),
            Id="reference-signedpropeties",
            Type=_SIGNED_PROPERTIES_TYPE,
        )
        _reference(signed_info, "#KeyInfoId", (), Id="reference-keyinfo")
        _ds(signature, "SignatureValue", Id="SignatureValue1")
        key_info = _ds(signature, "KeyInfo", Id="KeyInfoId")
        der = self._cert.public_bytes(serialization.Encoding.DER)
        _ds(_ds(key_info, "X509Data"), "X509Certificate").text = base64.b64encode(der).decode()
        self._qualifying_properties(_ds(signature, "Object"), when, der)
        return signature

    def _qualifying_properties(self, parent: etree._Element, when: datetime, der: bytes) -> None:
        qualifying = etree.SubElement(
            parent,
            f"{{{_XADES}}}QualifyingProperties",
            {"Target": "#Signature1"},
            nsmap={"xades": _XADES},
        )
        properties = _xades(
            _xades(qualifying, "SignedProperties", Id="SignedProperties_1"),
            "SignedSignatureProperties",
        )
        _xades(properties, "SigningTime").text = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        cert = _xades(_xades(properties, "SigningCertificate"), "Cert")
        digest = _xades(cert, "CertDigest")
        _ds(digest, "DigestMethod", Algorithm=_SHA256)
        _ds(digest, "DigestValue").text = _digest_of(der)
        serial = _xades(cert, "IssuerSerial")
        _ds(serial, "X509IssuerName").text = self._cert.issuer.rfc4514_string()
        _ds(serial, "X509SerialNumber").text = str(self._cert.serial_number)


def _enveloped_c14n(root: etree._Element) -> bytes:
    """The document without its ds:Signature, exc-c14n (the enveloped-signature transform)."""
    copy = etree.fromstring(etree.tostring(root))
    for signature in copy.findall(f"{{{_DS}}}Signature"):
        _remove_keeping_tail(signature)
    return etree.tostring(copy, method="c14n", exclusive=True)


def _remove_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is None:
        return
    previous = element.getprevious()
    if element.tail:
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def signature_problem(xml: bytes, ca_cert_pem: bytes) -> str | None:
    """Why the notification's XAdES signature does not verify against ``ca_cert_pem``; None if it does.

    The signature, its three references and the SigningCertificate digest are checked by signxml (an
    independent implementation); the certificate must be issued by the CA directly.
    """
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
        leaf = _signing_certificate(xml)
        leaf.verify_directly_issued_by(ca)
        config = XAdESSignatureConfiguration(
            default_reference_c14n_method=CanonicalizationMethod.CANONICAL_XML_1_0,
        )
        XAdESVerifier().verify(xml, x509_cert=leaf, expect_config=config)
    except (
        ValueError,
        TypeError,
        InvalidSignature,
        MalformedMessage,
        SignXMLException,
        etree.LxmlError,  # signxml's own schema check of the ds:Signature
    ) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def verify(xml: bytes, ca_cert_pem: bytes) -> bool:
    """True when the notification's XAdES signature verifies against the CA (see signature_problem)."""
    return signature_problem(xml, ca_cert_pem) is None


def _signing_certificate(xml: bytes) -> x509.Certificate:
    root = safexml.parse(xml)
    found = root.find(f".//{{{_DS}}}KeyInfo/{{{_DS}}}X509Data/{{{_DS}}}X509Certificate")
    if found is None or not found.text:
        raise MalformedMessage("no ds:X509Certificate in the signature's KeyInfo")
    return x509.load_der_x509_certificate(base64.b64decode("".join(found.text.split())))
