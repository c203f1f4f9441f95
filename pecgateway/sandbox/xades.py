"""XAdES-BES enveloped signatures as SDI puts them on its notifications, and their verification.

Owns the ds:Signature layout SDI uses (exc-c14n, rsa-sha256, three SHA-256 references, the
SigningCertificate property) and checking one with signxml, an independent implementation (the only
signxml import). Knows nothing of what the signed XML says: see notification.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

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

__all__ = ["XadesSigner", "signature_problem", "verify"]

_DS = "http://www.w3.org/2000/09/xmldsig#"
_XADES = "http://uri.etsi.org/01903/v1.3.2#"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"


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
