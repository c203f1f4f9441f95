"""What `pecgateway status` shows: the store's snapshot per account (contracts.md section 2).

Owns the choice between one account's object and ``{"accounts": {...}}``, the overdue flags (no
CONSEGNA 24 hours after the PEC provider took it; no SDI outcome 5 days after delivery to SDI), the
short human summary (times in local time; the JSON keeps ISO 8601 UTC) and the one-line summary of
what a ``once`` pass did. Reads the store, writes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, tzinfo
from typing import Any

from pecgateway import lifecycle
from pecgateway.config import Account, Config
from pecgateway.store import Store

__all__ = ["document", "pass_summary", "render_text"]


def document(
    store: Store, config: Config, now: datetime, account: str | None = None
) -> dict[str, Any]:
    """The ``status --json`` object: one account's, or ``{"accounts": {name: ...}}`` for several."""
    if account is not None:
        return _account(store, config.account(account), now)
    if len(config.accounts) == 1:
        return _account(store, config.accounts[0], now)
    return {"accounts": {a.name: _account(store, a, now) for a in config.accounts}}


def _account(store: Store, account: Account, now: datetime) -> dict[str, Any]:
    snapshot = store.snapshot(
        account.name, account.sdi_address, resend_after_s=account.resend_after_s
    )
    late = {
        (item.file_name, item.created)
        for item in store.find_outgoing_in_state(account.name, *lifecycle.AWAITING_SDI)
        if lifecycle.overdue(item.state, _when(item.delivered_at), now)
    }
    warnings = []
    outgoing: list[dict[str, Any]] = snapshot.get("outgoing", [])  # type: ignore[assignment]
    for entry in outgoing:
        _explain(entry)
        warning = _undelivered(entry, now)
        if warning is None and (entry.get("file"), entry.get("created")) in late:
            warning = (
                f"{entry['file']}: no SDI outcome 5 days after delivery to SDI; check the "
                "mailbox and SDI's services, or send the file again under a new name"
            )
        entry["overdue"] = warning is not None
        if warning is not None:
            warnings.append(warning)
    snapshot["warnings"] = warnings
    orphans: list[dict[str, Any]] = snapshot.get("orphans", [])  # type: ignore[assignment]
    for orphan in orphans:
        orphan["detail"] = _readable(orphan.get("kind"), orphan.get("detail"))
    return dict(snapshot)


# ---- what a person reads about one invoice ------------------------------------------------------


def _explain(entry: dict[str, Any]) -> None:
    """Receipts' details in words; the meaning of a refusal as a duplicate, which the state's
    general meaning ("fix it and send it again") would get wrong."""
    events: list[dict[str, Any]] = entry.get("events", [])
    for event in events:
        event["detail"] = _readable(event.get("event"), event.get("detail"))
    last = {str(event.get("event")): str(event.get("detail") or "") for event in events}
    rejected = last.get(lifecycle.Event.REJECTED.value, "")
    if entry.get("state") == lifecycle.State.REJECTED.value and rejected.startswith("[duplicate]"):
        entry["meaning"] = _ALREADY_SENT
    refused = last.get(lifecycle.Event.NS.value, "")
    if entry.get("state") == lifecycle.State.SDI_REJECTED.value and "error 00404" in refused:
        entry["meaning"] = _DUPLICATE_NUMBER


def _readable(kind: object, detail: object) -> object:
    """A PEC receipt's daticert ``errore`` "nessuno" (no error) in words; anything else as is."""
    receipt = isinstance(kind, str) and lifecycle.event_for_receipt(kind) is not None
    if receipt and isinstance(detail, str) and detail.strip().lower() == "nessuno":
        return "no error"
    return detail


_ALREADY_SENT = (
    "not sent again: an invoice with this file name or these very bytes was already sent (see "
    "the detail). Nothing to do if it is the same invoice; a corrected invoice is a new file with "
    "a new progressivo in its name"
)
_DUPLICATE_NUMBER = (
    "not issued: SDI already has an invoice of this seller with this number and year (error "
    "00404, duplicate invoice): check that invoice before sending anything; send this one "
    "again, with a new number, only if it is really a new invoice"
)


def _undelivered(entry: dict[str, Any], now: datetime) -> str | None:
    """The warning for an invoice the PEC provider took but did not deliver to SDI within 24 h."""
    try:
        state = lifecycle.State(entry.get("state"))
    except ValueError:
        return None
    events: list[dict[str, Any]] = entry.get("events", [])
    since = lifecycle.accepted_at(
        (str(e.get("event")), at) for e in events if (at := _when(e.get("at"))) is not None
    )
    if since is None or not lifecycle.delivery_overdue(state, since, now):
        return None
    date = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    how = (
        f"accepted by the PEC provider on {date} but"
        if state is lifecycle.State.ACCEPTED
        else f"handed to the PEC provider on {date}, with no acceptance receipt since, and"
    )
    return (
        f"{entry.get('file')}: {how} not delivered to SDI after 24 hours: check the provider's "
        "webmail for errors, then send the file again under a new name"
    )


def _when(value: str | None) -> datetime | None:
    """An ISO 8601 time of the store (UTC when it names no zone); None when absent or unreadable."""
    try:
        when = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when


def render_text(doc: dict[str, Any], tz: tzinfo | None = None) -> str:
    """A few readable lines per account; times in ``tz`` (default: this machine's local time)."""
    accounts = doc.get("accounts")
    if isinstance(accounts, dict):
        return "\n\n".join(f"[{name}]\n{_text(item, tz)}" for name, item in accounts.items())
    return _text(doc, tz)


def _local(value: object, tz: tzinfo | None) -> str:
    """An ISO 8601 time with its zone as ``2024-05-06 12:00:00 CEST``; anything else unchanged."""
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is None:
        return str(value)
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


def _text(item: dict[str, Any], tz: tzinfo | None) -> str:
    outgoing: list[dict[str, Any]] = item.get("outgoing", [])
    states = Counter(str(entry.get("state")) for entry in outgoing)
    lines = [f"SDI address: {item.get('sdi_address')}"]
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    lines.append(f"outgoing: {len(outgoing)}" + (f" ({summary})" if summary else ""))
    for entry in outgoing[-_SHOWN:]:
        lines += _outgoing_lines(entry, tz)
    incoming: list[dict[str, Any]] = item.get("incoming", [])
    lines.append(f"incoming: {len(incoming)}")
    for entry in incoming[-_SHOWN:]:
        lines.append(f"  {entry.get('file')} (received {_local(entry.get('received'), tz)})")
        lines += [f"    note: {warning}" for warning in entry.get("warnings", [])]
    orphans: list[dict[str, Any]] = item.get("orphans", [])
    if orphans:
        lines.append(f"about files we never sent: {len(orphans)}")
        lines += [line for entry in orphans[-_SHOWN:] for line in _orphan_lines(entry, tz)]
    quarantined: list[dict[str, Any]] = item.get("quarantined", [])
    lines.append(f"quarantined: {len(quarantined)}")
    for entry in quarantined[-_SHOWN:]:
        lines.append(f"  {entry.get('what')}: {entry.get('reason')}")
        lines.append(f"    kept at {entry.get('path')}")
    lines += [f"WARNING: {warning}" for warning in item.get("warnings", [])]
    if max(len(outgoing), len(incoming), len(orphans), len(quarantined)) > _SHOWN:
        lines.append(f"(the last {_SHOWN} of each are shown; --json lists everything)")
    return "\n".join(lines)


_SHOWN = 20


def _outgoing_lines(entry: dict[str, Any], tz: tzinfo | None) -> list[str]:
    sdi_id = entry.get("identificativo_sdi")
    head = f"  {entry.get('file')}: {entry.get('state')}"
    head += f", IdentificativoSdI {sdi_id}" if sdi_id else ""
    lines = [head + f" (updated {_local(entry.get('updated'), tz)})"]
    if entry.get("meaning"):
        lines.append(f"    {entry['meaning']}")
    if entry.get("next_action"):
        lines.append(f"    next: {entry['next_action']}")
    if entry.get("state") in _EXPLAINED_BY_LAST_EVENT:
        events: list[dict[str, Any]] = entry.get("events", [])
        if events and events[-1].get("detail"):
            lines.append(f"    {events[-1]['event']}: {events[-1]['detail']}")
    return lines


def _orphan_lines(entry: dict[str, Any], tz: tzinfo | None) -> list[str]:
    """A receipt or notification about a file we never sent (another program's, or a mistake)."""
    about = entry.get("file_name") or entry.get("message_id") or "an unknown file"
    sdi_id = entry.get("identificativo_sdi")
    head = f"  {entry.get('kind')} about {about}" + (
        f", IdentificativoSdI {sdi_id}" if sdi_id else ""
    )
    lines = [f"{head} (received {_local(entry.get('received'), tz)})"]
    paths: list[str] = entry.get("paths", [])
    lines += [f"    kept at {path}" for path in paths[:1]]
    return lines


_EXPLAINED_BY_LAST_EVENT = {"rejected", "sdi-rejected", "not-accepted", "pec-error", "pa-refused"}


# ---- what one `once` pass did -------------------------------------------------------------------

_E = lifecycle.Event
_OUTBOX_EVENTS = frozenset({_E.CLAIMED, _E.REJECTED, _E.SENDING, _E.SENT, _E.SEND_FAILED})
_MAILBOX_EVENTS = frozenset(event.value for event in _E if event not in _OUTBOX_EVENTS)


def pass_summary(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What happened between two status documents, one line per account, e.g.
    ``outbox: 2 sent, 1 rejected; mailbox: 5 receipts and notifications filed, 1 quarantined``."""
    old, new = _by_account(before), _by_account(after)
    lines = []
    for name, doc in new.items():
        line = _pass_line(old.get(name, {}), doc)
        lines.append(f"{name}: {line}" if len(new) > 1 else line)
    return "\n".join(lines)


def _by_account(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    accounts = doc.get("accounts")
    return accounts if isinstance(accounts, dict) else {"": doc}


def _pass_line(old: dict[str, Any], new: dict[str, Any]) -> str:
    known = {(e.get("file"), e.get("created")): len(e.get("events", [])) for e in _list(old)}
    events: Counter[str] = Counter()
    for entry in _list(new):
        seen = known.get((entry.get("file"), entry.get("created")), 0)
        events.update(str(event.get("event")) for event in entry.get("events", [])[seen:])
    outbox = f"outbox: {events[_E.SENT.value]} sent, {events[_E.REJECTED.value]} rejected"
    if events[_E.SEND_FAILED.value]:
        outbox += f", {events[_E.SEND_FAILED.value]} refused by the SMTP server"
    filed = sum(events[name] for name in _MAILBOX_EVENTS)
    mailbox = [f"{filed} receipts and notifications filed"]
    for key, what in (
        ("incoming", "supplier invoice(s) received"),
        ("orphans", "about files we never sent"),
        ("quarantined", "quarantined"),
    ):
        count = len(new.get(key, [])) - len(old.get(key, []))
        if count or key == "quarantined":
            mailbox.append(f"{count} {what}")
    return f"{outbox}; mailbox: {', '.join(mailbox)}"


def _list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    outgoing: list[dict[str, Any]] = doc.get("outgoing", [])
    return outgoing
