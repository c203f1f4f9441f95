"""The outgoing invoice's state machine: the table, out-of-order events, meanings, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pecgateway.errors import InvalidTransition
from pecgateway.lifecycle import (
    TABLE,
    Event,
    State,
    accepted_at,
    advance,
    delivery_overdue,
    describe,
    event_for_notification,
    event_for_receipt,
    is_final,
    overdue,
)

CONTRACT_STATES = {
    "queued", "rejected", "sending", "sent", "accepted", "not-accepted", "delivered-to-sdi",
    "pec-error", "sdi-rejected", "sdi-delivered", "sdi-not-delivered", "pa-accepted",
    "pa-refused", "pa-expired", "attested",
}  # fmt: skip
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def run(*events: Event, start: State = State.QUEUED) -> State:
    state = start
    for event in events:
        state = advance(state, event)
    return state


def test_state_values_are_exactly_the_contract_values() -> None:
    assert {state.value for state in State} == CONTRACT_STATES


def test_table_covers_every_state() -> None:
    assert set(TABLE) == set(State)


@given(st.sampled_from(State), st.sampled_from(Event))
def test_every_state_event_pair_gives_a_state_or_invalid_transition(
    state: State, event: Event
) -> None:
    if event in TABLE[state]:
        assert advance(state, event) is TABLE[state][event]
        return
    with pytest.raises(InvalidTransition) as caught:
        advance(state, event)
    assert (caught.value.state, caught.value.event) == (state.value, event.value)


def test_b2b_happy_path_reaches_sdi_delivered() -> None:
    events = (Event.SENDING, Event.SENT, Event.ACCETTAZIONE, Event.CONSEGNA, Event.RC)
    assert run(*events) is State.SDI_DELIVERED


def test_pa_path_reaches_pa_accepted_with_ne_ec01() -> None:
    events = (Event.SENDING, Event.SENT, Event.ACCETTAZIONE, Event.CONSEGNA, Event.RC)
    assert run(*events, Event.NE_EC01) is State.PA_ACCEPTED
    assert run(*events, Event.NE_EC02) is State.PA_REFUSED
    assert run(*events, Event.DT) is State.PA_EXPIRED


def test_check_failure_rejects_a_queued_file() -> None:
    assert run(Event.CLAIMED, Event.REJECTED) is State.REJECTED


def test_rejected_file_can_never_be_sent() -> None:
    with pytest.raises(InvalidTransition):
        advance(State.REJECTED, Event.SENDING)


def test_rc_after_mc_delivers() -> None:
    assert advance(State.SDI_NOT_DELIVERED, Event.RC) is State.SDI_DELIVERED


def test_mc_after_rc_is_ignored() -> None:
    assert advance(State.SDI_DELIVERED, Event.MC) is State.SDI_DELIVERED


@pytest.mark.parametrize("late", [Event.CONSEGNA, Event.ACCETTAZIONE, Event.PREAVVISO, Event.SENT])
@pytest.mark.parametrize(
    "state", [State.SDI_DELIVERED, State.SDI_REJECTED, State.SDI_NOT_DELIVERED, State.PA_ACCEPTED]
)
def test_late_pec_receipt_after_sdi_outcome_does_not_regress(state: State, late: Event) -> None:
    assert advance(state, late) is state


def test_late_consegna_after_rc_stays_sdi_delivered() -> None:
    assert run(Event.SENDING, Event.SENT, Event.RC, Event.ACCETTAZIONE, Event.CONSEGNA) is (
        State.SDI_DELIVERED
    )


@pytest.mark.parametrize("state", [State.SENDING, State.SENT])
def test_rc_before_accettazione_is_allowed(state: State) -> None:
    assert advance(state, Event.RC) is State.SDI_DELIVERED


def test_sending_invoice_whose_accettazione_arrives_is_accepted() -> None:
    assert advance(State.SENDING, Event.ACCETTAZIONE) is State.ACCEPTED


def test_sent_recorded_after_the_receipt_keeps_the_receipt_state() -> None:
    assert run(Event.SENDING, Event.ACCETTAZIONE, Event.SENT) is State.ACCEPTED


@pytest.mark.parametrize(
    "state",
    [State.SENDING, State.SENT, State.ACCEPTED, State.DELIVERED_TO_SDI, State.PEC_ERROR],
)
def test_ns_from_any_state_before_sdi_outcome_rejects(state: State) -> None:
    assert advance(state, Event.NS) is State.SDI_REJECTED


@pytest.mark.parametrize("state", [State.SDI_DELIVERED, State.SDI_NOT_DELIVERED, State.QUEUED])
def test_ns_after_an_outcome_or_before_sending_is_invalid(state: State) -> None:
    with pytest.raises(InvalidTransition):
        advance(state, Event.NS)


def test_ns_is_final_a_resend_needs_a_new_record() -> None:
    with pytest.raises(InvalidTransition):
        advance(State.SDI_REJECTED, Event.SENDING)
    assert is_final(State.SDI_REJECTED)


def test_permanent_smtp_failure_is_not_accepted_and_may_be_resent() -> None:
    assert run(Event.SENDING, Event.SEND_FAILED) is State.NOT_ACCEPTED
    assert advance(State.NOT_ACCEPTED, Event.SENDING) is State.SENDING


def test_pec_error_may_be_resent_and_a_late_consegna_still_counts() -> None:
    assert advance(State.PEC_ERROR, Event.SENDING) is State.SENDING
    assert advance(State.PEC_ERROR, Event.CONSEGNA) is State.DELIVERED_TO_SDI


def test_pa_mc_then_at_is_attested() -> None:
    assert run(Event.SENDING, Event.SENT, Event.MC, Event.AT) is State.ATTESTED


def test_is_final_depends_on_flow_for_rc_and_mc() -> None:
    assert is_final(State.SDI_DELIVERED, "B2B")
    assert is_final(State.SDI_NOT_DELIVERED, "B2B")
    assert not is_final(State.SDI_DELIVERED, "PA")
    assert not is_final(State.SDI_DELIVERED)
    assert not is_final(State.SENDING, "B2B")
    assert is_final(State.PA_EXPIRED, "PA")


def test_describe_ns_says_fix_and_resend_under_new_name() -> None:
    text = describe(State.SDI_REJECTED, "B2B")
    assert "not issued" in text
    assert "5 days" in text
    assert "new file name" in text


def test_describe_b2b_mc_is_issued_not_an_error() -> None:
    text = describe(State.SDI_NOT_DELIVERED, "B2B")
    assert "issued, not delivered" in text
    assert "cassetto fiscale" in text
    assert "not an error" in text


def test_describe_pa_mc_says_an_at_may_follow() -> None:
    assert "AT follows" in describe(State.SDI_NOT_DELIVERED, "PA")


@given(st.sampled_from(State), st.sampled_from(["PA", "B2B", "other"]))
def test_every_state_has_a_meaning_in_both_flows(state: State, flow: str) -> None:
    assert describe(state, flow)


def test_overdue_after_five_days_without_sdi_outcome() -> None:
    assert overdue(State.DELIVERED_TO_SDI, T0, T0 + timedelta(days=5, seconds=1))
    assert not overdue(State.DELIVERED_TO_SDI, T0, T0 + timedelta(days=4, hours=23))


def test_not_overdue_once_sdi_answered_or_never_delivered() -> None:
    late = T0 + timedelta(days=30)
    assert not overdue(State.SDI_DELIVERED, T0, late)
    assert not overdue(State.DELIVERED_TO_SDI, None, late)
    assert not overdue(State.SENDING, T0, late)


@pytest.mark.parametrize("state", [State.SENT, State.ACCEPTED])
def test_accepted_but_not_delivered_to_sdi_after_24_hours_is_delivery_overdue(
    state: State,
) -> None:
    assert delivery_overdue(state, T0, T0 + timedelta(hours=24, seconds=1))
    assert not delivery_overdue(state, T0, T0 + timedelta(hours=23, minutes=59))
    assert not delivery_overdue(state, None, T0 + timedelta(days=30))


@given(st.sampled_from(State), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=99)))
def test_delivery_overdue_only_while_awaiting_the_consegna(state: State, age: timedelta) -> None:
    flagged = delivery_overdue(state, T0, T0 + age)
    assert flagged == (state in {State.SENT, State.ACCEPTED} and age > timedelta(hours=24))


def _trail(*pairs: tuple[str, int]) -> list[tuple[str, datetime]]:
    return [(event, T0 + timedelta(hours=hours)) for event, hours in pairs]


def test_accepted_at_is_the_first_accettazione_of_the_last_attempt() -> None:
    trail = _trail(
        ("claimed", 0), ("sending", 0), ("sent", 1), ("accettazione", 2),
        ("errore-consegna", 30), ("sending", 40), ("sent", 41), ("accettazione", 42),
        ("accettazione", 43), ("preavviso-errore-consegna", 54),
    )  # fmt: skip
    assert accepted_at(trail) == T0 + timedelta(hours=42)


def test_accepted_at_without_a_receipt_is_the_send_and_before_it_none() -> None:
    assert accepted_at(_trail(("sending", 0), ("sent", 1), ("sdi-outcome-overdue", 2))) == (
        T0 + timedelta(hours=1)
    )
    assert accepted_at(_trail(("claimed", 0), ("sending", 0))) is None
    assert accepted_at([]) is None


def test_accettazione_found_before_the_late_sent_of_a_crash_starts_the_clock() -> None:
    trail = _trail(("sending", 0), ("accettazione", 1), ("sent", 5))
    assert accepted_at(trail) == T0 + timedelta(hours=1)


@pytest.mark.parametrize(
    ("value", "event"),
    [
        ("accettazione", Event.ACCETTAZIONE),
        ("avvenuta-consegna", Event.CONSEGNA),
        ("errore-consegna", Event.ERRORE_CONSEGNA),
        ("preavviso-errore-consegna", Event.PREAVVISO),
        ("non-accettazione", Event.NON_ACCETTAZIONE),
        ("rilevazione-virus", Event.RILEVAZIONE_VIRUS),
        ("posta-certificata", None),
        ("anomalia", None),
        ("never-heard-of", None),
    ],
)
def test_every_receipt_type_maps_to_an_explicit_event_or_none(
    value: str, event: Event | None
) -> None:
    assert event_for_receipt(value) is event


@pytest.mark.parametrize(
    ("code", "esito", "event"),
    [
        ("RC", None, Event.RC),
        ("ns", None, Event.NS),
        ("MC", None, Event.MC),
        ("NE", "EC01", Event.NE_EC01),
        ("NE", "ec02", Event.NE_EC02),
        ("NE", None, None),
        ("DT", None, Event.DT),
        ("AT", None, Event.AT),
        ("MT", None, None),
        ("EC", "EC01", None),
    ],
)
def test_notification_codes_map_to_events(
    code: str, esito: str | None, event: Event | None
) -> None:
    assert event_for_notification(code, esito) is event
