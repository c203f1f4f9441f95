"""The formal checks a PEC provider runs on a submitted message before accepting it (spec §6).

Owns the rules: From equal to the authenticated account and to MAIL FROM, no Bcc, the To/Cc
recipients equal to RCPT TO, the size limit. Pure: returns the problems found, in words a person
understands; the provider turns them into an AVVISO DI NON ACCETTAZIONE.
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from pecgateway.sandbox.submission import Submission

__all__ = ["addresses", "formal_problems"]


def addresses(parsed: Message, header: str) -> list[str]:
    """The lower-cased addr-specs of every ``header`` field of ``parsed``."""
    values = [str(value) for value in parsed.get_all(header, [])]
    return [address.lower() for _, address in getaddresses(values) if address]


def _sender_problems(submission: Submission, parsed: Message, account: str) -> list[str]:
    problems = []
    senders = addresses(parsed, "From")
    if senders != [account]:
        shown = ", ".join(senders) or "missing"
        problems.append(f"From header ({shown}) must be the authenticated account {account}")
    if submission.mail_from.lower() != account:
        problems.append(
            f"MAIL FROM <{submission.mail_from}> must be the authenticated account {account}"
        )
    return problems


def _recipient_problems(submission: Submission, parsed: Message) -> list[str]:
    problems = []
    if parsed.get_all("Bcc"):
        problems.append("Bcc recipients are not allowed in PEC")
    headers = set(addresses(parsed, "To") + addresses(parsed, "Cc"))
    envelope = {r.lower() for r in submission.rcpt_tos}
    if headers != envelope:
        only_headers = ", ".join(sorted(headers - envelope)) or "none"
        only_envelope = ", ".join(sorted(envelope - headers)) or "none"
        problems.append(
            "the To/Cc recipients must be exactly the RCPT TO recipients "
            f"(only in To/Cc: {only_headers}; only in RCPT TO: {only_envelope})"
        )
    return problems


def formal_problems(
    submission: Submission, parsed: Message, *, account: str, max_bytes: int
) -> list[str]:
    """Every reason to refuse ``submission``; empty when it may be accepted."""
    problems = _sender_problems(submission, parsed, account.lower())
    problems += _recipient_problems(submission, parsed)
    if len(submission.data) > max_bytes:
        problems.append(
            f"the message is {len(submission.data)} bytes, over the {max_bytes}-byte limit"
        )
    return problems
