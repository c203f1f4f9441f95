"""Connecting to the PEC provider: the verifying TLS context and failures in plain words (smtp, imap).

Owns what SMTP and IMAP share before their protocols start: the trust store (system plus ``ca_file``,
verification always on) and turning a failed connection (refused, unknown host, untrusted
certificate, the wrong TLS mode for the port, no answer) into a reason that says which setting to
change. Opens no connection itself.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

__all__ = ["USUAL_PORTS", "connection_failure", "context", "security_of"]

USUAL_PORTS = {"SMTP": {"tls": 465, "starttls": 587}, "IMAP": {"tls": 993, "starttls": 143}}
_NAME_MISMATCH = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def context(ca_file: object) -> ssl.SSLContext:
    """The system trust store plus the extra CA file, if any; hostname checks always on."""
    created = ssl.create_default_context()
    if ca_file:
        created.load_verify_locations(cafile=str(ca_file))
    return created


def security_of(setting: object) -> str:
    """``"tls"`` or ``"starttls"`` whether the setting is a string or a str-valued Enum."""
    return str(getattr(setting, "value", setting)).lower()


def connection_failure(
    exc: BaseException, *, protocol: str, host: str, port: int, security: str
) -> str:
    """Why connecting to ``host:port`` failed and which setting to look at (``protocol``: SMTP|IMAP)."""
    tls_port = USUAL_PORTS.get(protocol, {}).get("tls")
    for cause in _chain(exc):
        words = _known(cause, host, port, tls_port)
        if words is not None:
            return words
    if any(isinstance(cause, TimeoutError) for cause in _chain(exc)):
        return _no_answer(security, tls_port)
    detail = str(exc) or type(exc).__name__
    return f"cannot connect to {host}:{port}: {detail}; check host, port and security"


def _known(cause: BaseException, host: str, port: int, tls_port: int | None) -> str | None:
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _untrusted(cause, host)
    if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
        other = f', usually {tls_port} with security = "tls"' if tls_port else ""
        return (
            'the server does not speak implicit TLS on this port: try security = "starttls" '
            f"(or the other port{other})"
        )
    if isinstance(cause, ConnectionRefusedError):
        return (
            f"the server is not listening on {host}:{port}: check host and port, or the server "
            "is down"
        )
    if isinstance(cause, socket.gaierror):
        return f"the host name {host!r} cannot be found: check host (and this machine's DNS)"
    return None


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and its causes (the libraries wrap the socket's error in their own)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _untrusted(error: ssl.SSLCertVerificationError, host: str) -> str:
    words = error.verify_message or error.reason or "verification failed"
    if error.verify_code in _NAME_MISMATCH:
        return (
            f"certificate not trusted: {words}; the certificate is not for {host!r}: set host to "
            "the name the provider gives for this server"
        )
    return (
        f"certificate not trusted: {words}; if the server uses a private CA, set ca_file to its PEM"
    )


def _no_answer(security: str, tls_port: int | None) -> str:
    if security == "starttls":
        port_words = f" (usually {tls_port})" if tls_port else ""
        return (
            "no answer in time (timeout_s); if this port expects implicit TLS"
            f'{port_words}, set security = "tls"'
        )
    return "no answer in time (timeout_s): check host and port, and that no firewall is in the way"
