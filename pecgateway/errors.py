"""The pecgateway error hierarchy: one shallow tree under PecGatewayError.

Each error carries structured fields (what it is about, why) so that the one place that decides what to
do with a failing unit of work (service.py) can act on the type and log the fields, not parse text.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidInvoice",
    "InvalidTransition",
    "MalformedMessage",
    "PecGatewayError",
    "PermanentSendError",
    "TransientError",
]


class PecGatewayError(Exception):
    """Base of every error pecgateway raises on purpose."""

    def __init__(self, reason: str, *, subject: str | None = None) -> None:
        super().__init__(reason if subject is None else f"{subject}: {reason}")
        self.reason = reason
        self.subject = subject


class ConfigError(PecGatewayError):
    """The configuration is wrong; ``key`` is the TOML key path (``accounts[0].imap.port``)."""

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        super().__init__(reason, subject=key)
        self.key = key


class InvalidInvoice(PecGatewayError):
    """Our own outbound file fails the checks: it goes to ``rejected/``, never to SDI.

    ``problems`` holds the individual findings (objects of ``validate.Problem``).
    """

    def __init__(self, reason: str, *, path: str | None = None, problems: tuple[object, ...] = ()):
        super().__init__(reason, subject=path)
        self.path = path
        self.problems = problems


class MalformedMessage(PecGatewayError):
    """Their input (a mail, an attachment, a p7m, an XML file) cannot be understood.

    This is the one error type that the pure core's parsing functions raise.
    """


class InvalidTransition(PecGatewayError):
    """A lifecycle event that the transition table does not allow from the current state."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event


class TransientError(PecGatewayError):
    """Worth retrying later: network trouble, SMTP 4xx, an IMAP drop, a timeout."""


class PermanentSendError(PecGatewayError):
    """The SMTP server refused for good (5xx); ``smtp_code`` and the server's words are kept."""

    def __init__(self, reason: str, *, smtp_code: int | None = None, subject: str | None = None):
        super().__init__(reason, subject=subject)
        self.smtp_code = smtp_code
