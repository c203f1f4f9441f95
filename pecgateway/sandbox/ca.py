"""The sandbox's certificate authority and every certificate the sandbox needs.

Owns key and certificate generation (cryptography) and their PEM files in one directory: the CA, the
TLS certificate of the loopback servers, and the signing certificates of the user's PEC provider, of
SDI, of SDI's PEC provider and of a supplier. Files are reused when present; nothing else is signed here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KeyPair", "SandboxCA"]

_VALIDITY = dt.timedelta(days=3650)
_KEY_BITS = 2048


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key and its certificate, as PEM files and bytes."""

    key_path: Path
    cert_path: Path
    key_pem: bytes
    cert_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError(f"{self.key_path}: expected an RSA key")
        return key


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str
    common_name: str
    organization: str
    email: str | None = None
    server: bool = False


_SPECS = (
    _Spec("server", "localhost", "pecgateway sandbox", server=True),
    _Spec(
        "provider",
        "PEC Sandbox S.p.A. firma ricevute",
        "PEC Sandbox S.p.A.",
        email="posta-certificata@pec.sandbox.test",
    ),
    _Spec("sdi", "Sistema di Interscambio (sandbox)", "Agenzia delle Entrate (sandbox)"),
    _Spec(
        "sogei",
        "Sogei PEC (sandbox)",
        "Sogei S.p.A. (sandbox)",
        email="posta-certificata@pec.sogei.test",
    ),
    _Spec("supplier", "Fornitore di prova S.r.l.", "Fornitore di prova S.r.l."),
)


@dataclass(frozen=True, slots=True)
class SandboxCA:
    """The CA (``ca``) and the leaf key pairs it signed, stored in ``directory``."""

    directory: Path
    ca: KeyPair
    server: KeyPair
    provider: KeyPair
    sdi: KeyPair
    sogei: KeyPair
    supplier: KeyPair

    @property
    def ca_file(self) -> Path:
        return self.ca.cert_path

    @classmethod
    def load_or_create(cls, directory: Path, *, now: dt.datetime | None = None) -> SandboxCA:
        """Reuses the PEM files in ``directory`` when all are there, else makes them all anew."""
        directory.mkdir(parents=True, exist_ok=True)
        names = ["ca", *(spec.name for spec in _SPECS)]
        if all(_exists(directory, name) for name in names):
            pairs = {name: _load(directory, name) for name in names}
        else:
            pairs = _create_all(directory, now or dt.datetime.now(dt.UTC))
        return cls(directory=directory, **pairs)


def _exists(directory: Path, name: str) -> bool:
    return (directory / f"{name}.key.pem").is_file() and (directory / f"{name}.cert.pem").is_file()


def _load(directory: Path, name: str) -> KeyPair:
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    return KeyPair(key_path, cert_path, key_path.read_bytes(), cert_path.read_bytes())


def _create_all(directory: Path, now: dt.datetime) -> dict[str, KeyPair]:
    ca_key = _new_key()
    ca_name = _name("pecgateway sandbox CA", "pecgateway sandbox")
    ca_cert = _ca_certificate(ca_key, ca_name, now)
    pairs = {"ca": _store(directory, "ca", ca_key, ca_cert)}
    for spec in _SPECS:
        key = _new_key()
        cert = _leaf_certificate(spec, key, ca_key, ca_name, now)
        pairs[spec.name] = _store(directory, spec.name, key, cert)
    return pairs


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + _VALIDITY)
    )


def _ca_certificate(key: rsa.RSAPrivateKey, name: x509.Name, now: dt.datetime) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        _builder(name, name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def _leaf_certificate(
    spec: _Spec,
    key: rsa.RSAPrivateKey,
    ca_key: rsa.RSAPrivateKey,
    ca_name: x509.Name,
    now: dt.datetime,
) -> x509.Certificate:
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=not spec.server,
        key_encipherment=spec.server,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        _builder(_name(spec.common_name, spec.organization), ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    for extension in _leaf_extensions(spec):
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _leaf_extensions(spec: _Spec) -> list[x509.ExtensionType]:
    if spec.server:
        names = [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
        purpose = [ExtendedKeyUsageOID.SERVER_AUTH]
        return [x509.SubjectAlternativeName(names), x509.ExtendedKeyUsage(purpose)]
    extensions: list[x509.ExtensionType] = []
    if spec.email:
        extensions.append(x509.SubjectAlternativeName([x509.RFC822Name(spec.email)]))
        extensions.append(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]))
    return extensions


def _store(directory: Path, name: str, key: rsa.RSAPrivateKey, cert: x509.Certificate) -> KeyPair:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_path, cert_path = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    _write(key_path, key_pem, 0o640)
    _write(cert_path, cert_pem, 0o644)
    return KeyPair(key_path, cert_path, key_pem, cert_pem)


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    temporary.replace(path)
