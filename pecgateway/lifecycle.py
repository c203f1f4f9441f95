"""The outgoing invoice's lifecycle: states, events, ONE transition table and ``advance``.

Pure: no I/O, no clock (times are arguments). Events arrive out of order (an RC before the PEC
ACCETTAZIONE, a CONSEGNA after the RC, an RC after an MC); a late event never makes a state regress.
``advance`` returns the next state or raises ``InvalidTransition``, nothing else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from pecgateway.errors import InvalidTransition

__all__ = [
    "AWAITING_DELIVERY",
    "AWAITING_SDI",
    "DELIVERY_DEADLINE",
    "SDI_OUTCOME_DEADLINE",
    "TABLE",
    "Event",
    "State",
    "accepted_at",
    "advance",
    "delivery_overdue",
    "describe",
    "event_for_notification",
    "event_for_receipt",
    "is_final",
    "overdue",
]


class State(enum.Enum):
    """Outgoing ``state`` values of contracts.md section 2."""

    QUEUED = "queued"
    REJECTED = "rejected"
    SENDING = "sending"
    SENT = "sent"
    ACCEPTED = "accepted"
    NOT_ACCEPTED = "not-accepted"
    DELIVERED_TO_SDI = "delivered-to-sdi"
    PEC_ERROR = "pec-error"
    SDI_REJECTED = "sdi-rejected"
    SDI_DELIVERED = "sdi-delivered"
    SDI_NOT_DELIVERED = "sdi-not-delivered"
    PA_ACCEPTED = "pa-accepted"
    PA_REFUSED = "pa-refused"
    PA_EXPIRED = "pa-expired"
    ATTESTED = "attested"


class Event(enum.Enum):
    """What can happen to an outgoing invoice; values are the audit trail's ``event`` strings.

    Ours: claimed, rejected, sending (one per SMTP attempt), sent, send-failed (permanent 5xx).
    PEC receipts (``X-Ricevuta`` values). SDI notifications (codes; NE split by ``Esito``).
    """

    CLAIMED = "claimed"
    REJECTED = "rejected"
    SENDING = "sending"
    SENT = "sent"
    SEND_FAILED = "send-failed"
    ACCETTAZIONE = "accettazione"
    NON_ACCETTAZIONE = "non-accettazione"
    PRESA_IN_CARICO = "presa-in-carico"
    CONSEGNA = "avvenuta-consegna"
    ERRORE_CONSEGNA = "errore-consegna"
    PREAVVISO = "preavviso-errore-consegna"
    RILEVAZIONE_VIRUS = "rilevazione-virus"
    RC = "RC"
    NS = "NS"
    MC = "MC"
    NE_EC01 = "NE-EC01"
    NE_EC02 = "NE-EC02"
    DT = "DT"
    AT = "AT"


S, E = State, Event

# PEC receipts that may arrive late, after a more advanced state: recorded, state unchanged.
_LATE_PEC = (E.ACCETTAZIONE, E.PRESA_IN_CARICO, E.CONSEGNA, E.PREAVVISO, E.SENT)
# Contradicting PEC failures after SDI has answered: SDI's answer wins, state unchanged.
_LATE_PEC_FAILURE = (E.ERRORE_CONSEGNA, E.NON_ACCETTAZIONE, E.RILEVAZIONE_VIRUS)
# SDI's outcome, allowed from every state before it (an RC may precede the ACCETTAZIONE).
_SDI_OUTCOME = {
    E.RC: S.SDI_DELIVERED,
    E.NS: S.SDI_REJECTED,
    E.MC: S.SDI_NOT_DELIVERED,
    E.NE_EC01: S.PA_ACCEPTED,
    E.NE_EC02: S.PA_REFUSED,
    E.DT: S.PA_EXPIRED,
    E.AT: S.ATTESTED,
}

# What the provider's delivery receipts (or SDI's outcome) make of an invoice not yet at SDI.
_PEC_DELIVERY = {
    E.CONSEGNA: S.DELIVERED_TO_SDI,
    E.ERRORE_CONSEGNA: S.PEC_ERROR,
    E.RILEVAZIONE_VIRUS: S.PEC_ERROR,
    **_SDI_OUTCOME,
}
# ... and with the acceptance receipts, of an invoice sent (or being sent) but not yet accepted.
_PEC_RECEIPT = {
    E.ACCETTAZIONE: S.ACCEPTED,
    E.PRESA_IN_CARICO: S.ACCEPTED,
    E.PREAVVISO: S.ACCEPTED,
    E.NON_ACCETTAZIONE: S.NOT_ACCEPTED,
    **_PEC_DELIVERY,
}


def _stay(state: State, events: Iterable[Event]) -> dict[Event, State]:
    return dict.fromkeys(events, state)


def _after_sdi(state: State, *more: Event) -> dict[Event, State]:
    """A state reached on SDI's word: late PEC receipts and repeats of ``more`` leave it as is."""
    return _stay(state, (*_LATE_PEC, *_LATE_PEC_FAILURE, *more))


TABLE: Mapping[State, Mapping[Event, State]] = {
    S.QUEUED: {E.CLAIMED: S.QUEUED, E.REJECTED: S.REJECTED, E.SENDING: S.SENDING},
    S.REJECTED: {E.REJECTED: S.REJECTED},
    S.SENDING: {
        E.SENDING: S.SENDING,
        E.SENT: S.SENT,
        E.SEND_FAILED: S.NOT_ACCEPTED,
        **_PEC_RECEIPT,  # crash reconciliation: a receipt proves the invoice was sent
    },
    S.SENT: {E.SENT: S.SENT, **_PEC_RECEIPT},
    S.ACCEPTED: {
        **_stay(S.ACCEPTED, (E.SENT, E.ACCETTAZIONE, E.PRESA_IN_CARICO, E.PREAVVISO)),
        **_PEC_DELIVERY,
    },
    S.NOT_ACCEPTED: {E.NON_ACCETTAZIONE: S.NOT_ACCEPTED, E.SENDING: S.SENDING},
    S.DELIVERED_TO_SDI: {
        **_stay(S.DELIVERED_TO_SDI, (*_LATE_PEC, E.ERRORE_CONSEGNA)),
        **_SDI_OUTCOME,
    },
    S.PEC_ERROR: {
        **_stay(S.PEC_ERROR, (E.SENT, E.ACCETTAZIONE, E.PRESA_IN_CARICO, E.PREAVVISO)),
        **_stay(S.PEC_ERROR, (E.ERRORE_CONSEGNA, E.RILEVAZIONE_VIRUS)),
        E.CONSEGNA: S.DELIVERED_TO_SDI,
        E.SENDING: S.SENDING,
        **_SDI_OUTCOME,
    },
    S.SDI_REJECTED: _after_sdi(S.SDI_REJECTED, E.NS),
    S.SDI_DELIVERED: {
        **_after_sdi(S.SDI_DELIVERED, E.RC, E.MC),  # an MC after the RC is to be ignored
        E.NE_EC01: S.PA_ACCEPTED,
        E.NE_EC02: S.PA_REFUSED,
        E.DT: S.PA_EXPIRED,
        E.AT: S.SDI_DELIVERED,
    },
    S.SDI_NOT_DELIVERED: {
        **_after_sdi(S.SDI_NOT_DELIVERED, E.MC),
        E.RC: S.SDI_DELIVERED,
        E.NE_EC01: S.PA_ACCEPTED,
        E.NE_EC02: S.PA_REFUSED,
        E.DT: S.PA_EXPIRED,
        E.AT: S.ATTESTED,
    },
    S.PA_ACCEPTED: _after_sdi(S.PA_ACCEPTED, E.RC, E.MC, E.NE_EC01),
    S.PA_REFUSED: _after_sdi(S.PA_REFUSED, E.RC, E.MC, E.NE_EC02),
    S.PA_EXPIRED: _after_sdi(S.PA_EXPIRED, E.RC, E.MC, E.DT),
    S.ATTESTED: _after_sdi(S.ATTESTED, E.MC, E.AT),
}

del S, E

# States in which SDI's outcome is still awaited once the file reached SDI.
AWAITING_SDI = frozenset({State.SENT, State.ACCEPTED, State.DELIVERED_TO_SDI})
SDI_OUTCOME_DEADLINE = timedelta(days=5)

# States in which the PEC provider has (or may have) taken the message but SDI's mailbox has not.
AWAITING_DELIVERY = frozenset({State.SENT, State.ACCEPTED})
# A provider sends a preavviso at 12 h and an errore-consegna at 24 h; silence after that is a fault.
DELIVERY_DEADLINE = timedelta(hours=24)

_FINAL_ANY_FLOW = frozenset(
    {
        State.REJECTED,
        State.SDI_REJECTED,
        State.PA_ACCEPTED,
        State.PA_REFUSED,
        State.PA_EXPIRED,
        State.ATTESTED,
    }
)
_FINAL_B2B = frozenset({State.SDI_DELIVERED, State.SDI_NOT_DELIVERED})


def advance(state: State, event: Event) -> State:
    """The state after ``event``; raises ``InvalidTransition`` when the table does not allow it."""
    try:
        return TABLE[state][event]
    except KeyError:
        raise InvalidTransition(state.value, event.value) from None


def is_final(state: State, flow: str | None = None) -> bool:
    """Whether no further event is expected.

    With ``flow=None`` the answer holds for both flows; with ``"B2B"`` an RC or an MC is final too
    (only the PA flow has NE, DT and AT after them).
    """
    if state in _FINAL_ANY_FLOW:
        return True
    return flow == "B2B" and state in _FINAL_B2B


def overdue(state: State, delivered_at: datetime | None, now: datetime) -> bool:
    """No SDI outcome (RC, NS, MC) 5 days after the file reached SDI's mailbox."""
    if state not in AWAITING_SDI or delivered_at is None:
        return False
    return now - delivered_at > SDI_OUTCOME_DEADLINE


def delivery_overdue(state: State, accepted_at: datetime | None, now: datetime) -> bool:
    """Taken by the PEC provider (``sent`` or ``accepted``) but no CONSEGNA from SDI's mailbox and
    no error 24 hours after ``accepted_at`` (see ``accepted_at``)."""
    if state not in AWAITING_DELIVERY or accepted_at is None:
        return False
    return now - accepted_at > DELIVERY_DEADLINE


_TAKEN = frozenset({Event.ACCETTAZIONE.value, Event.PRESA_IN_CARICO.value})


def accepted_at(events: Iterable[tuple[str, datetime]]) -> datetime | None:
    """When the PEC provider took the last attempt (after the last ``sending``): its first
    ACCETTAZIONE (or PRESA IN CARICO), else its first ``sent``; ``None`` before either.

    ``events`` are the audit trail's ``(event, at)`` pairs in order; other words are ignored."""
    sent: datetime | None = None
    taken: datetime | None = None
    for event, at in events:
        if event == Event.SENDING.value:
            sent, taken = None, None
        elif event == Event.SENT.value:
            sent = sent or at
        elif event in _TAKEN:
            taken = taken or at
    return taken or sent


_MEANING: Mapping[State, str] = {
    State.QUEUED: "taken from the outbox, not sent yet",
    State.REJECTED: "failed our own checks and was never sent: see the reason in the rejected "
    "folder, fix the file and drop it into the outbox again",
    State.SENDING: "being handed to the PEC provider",
    State.SENT: "handed to the PEC provider, waiting for its acceptance receipt",
    State.ACCEPTED: "accepted by the PEC provider, waiting for delivery to SDI",
    State.NOT_ACCEPTED: "refused by the PEC provider and not sent: see the detail, fix and send "
    "it again",
    State.DELIVERED_TO_SDI: "delivered to SDI's mailbox, waiting for SDI's outcome (due within 5 "
    "days)",
    State.PEC_ERROR: "the PEC message could not be delivered to SDI: send it again",
    State.SDI_REJECTED: "not issued: fix it and send it again within 5 days under a new file name",
    State.SDI_DELIVERED: "issued and delivered to the buyer",
    State.PA_ACCEPTED: "issued, delivered and accepted by the public administration",
    State.PA_REFUSED: "issued and delivered, but refused by the public administration: agree a "
    "credit note with them",
    State.PA_EXPIRED: "issued and delivered; the public administration did not answer within 15 "
    "days (decorrenza termini)",
    State.ATTESTED: "issued; SDI could not deliver it to the public administration and attests "
    "the transmission: send the attestation to them",
}
_NOT_DELIVERED: Mapping[str, str] = {
    "B2B": "issued, not delivered: the buyer finds it in their reserved area (cassetto fiscale); "
    "not an error",
    "PA": "issued, not delivered yet: SDI keeps trying; an AT follows if it cannot deliver",
}


def describe(state: State, flow: str) -> str:
    """What ``state`` means for a person, in the ``"PA"`` or ``"B2B"`` flow."""
    if state is State.SDI_NOT_DELIVERED:
        return _NOT_DELIVERED.get(flow, _NOT_DELIVERED["B2B"])
    return _MEANING[state]


_RECEIPT_EVENTS: Mapping[str, Event] = {
    event.value: event
    for event in (
        Event.ACCETTAZIONE,
        Event.NON_ACCETTAZIONE,
        Event.PRESA_IN_CARICO,
        Event.CONSEGNA,
        Event.ERRORE_CONSEGNA,
        Event.PREAVVISO,
        Event.RILEVAZIONE_VIRUS,
    )
}
_NOTIFICATION_EVENTS: Mapping[tuple[str, str | None], Event] = {
    ("RC", None): Event.RC,
    ("NS", None): Event.NS,
    ("MC", None): Event.MC,
    ("NE", "EC01"): Event.NE_EC01,
    ("NE", "EC02"): Event.NE_EC02,
    ("DT", None): Event.DT,
    ("AT", None): Event.AT,
}


def event_for_receipt(pec_type: str) -> Event | None:
    """The event of a PEC receipt given its ``X-Ricevuta`` value (``pec.PecType.value``).

    ``None`` for values that are not about our outgoing message (``posta-certificata``,
    ``anomalia``): the caller records them as orphans, never as an acceptance.
    """
    return _RECEIPT_EVENTS.get(pec_type)


def event_for_notification(code: str, esito: str | None = None) -> Event | None:
    """The event of an SDI notification (``NotificationType.value`` and, for NE, its ``Esito``).

    ``None`` for notifications that do not move an outgoing invoice (MT, EC, SE, an NE whose
    ``Esito`` is unknown).
    """
    key = (code.upper(), (esito or "").upper() if code.upper() == "NE" else None)
    return _NOTIFICATION_EVENTS.get(key)
