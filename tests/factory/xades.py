"""A throwaway "SDI" signing identity for tests: an RSA CA and the SDI certificate it issued.

Made with `cryptography` at test time (once per session); never written to disk. Test-only: the
product's sandbox makes its own with pecgateway.sandbox.ca.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["SdiIdentity", "other_identity", "sdi_identity"]

_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class SdiIdentity:
    """PEM bytes: the CA certificate, and the SDI key and certificate."""

    ca_pem: bytes
    key_pem: bytes
    cert_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pecgateway test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    signer: rsa.RSAPrivateKey,
    ca: bool,
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_EPOCH)
        .not_valid_after(_EPOCH + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(signer, hashes.SHA256())
    )


def _make(ca_name: str) -> SdiIdentity:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate(_name(ca_name), _name(ca_name), ca_key, ca_key, ca=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sdi_name = _name("Sistema Interscambio Fattura PA (test)")
    cert = _certificate(sdi_name, ca.subject, key, ca_key, ca=False)
    return SdiIdentity(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
    )


@functools.cache
def sdi_identity() -> SdiIdentity:
    """The session's test CA and SDI signing certificate."""
    return _make("pecgateway test CA")


@functools.cache
def other_identity() -> SdiIdentity:
    """An unrelated CA and certificate: signatures by it must not verify against sdi_identity's CA."""
    return _make("some other CA")
