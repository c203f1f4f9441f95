"""What `pecgateway status` shows: the store's snapshot per account (contracts.md section 2).

Owns the choice between one account's object and ``{"accounts": {...}}``, the overdue flags (no SDI
outcome 5 days after delivery to SDI) and the short human summary. Reads the store, writes nothing.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from pecgateway import lifecycle
from pecgateway.config import Account, Config
from pecgateway.store import Store

__all__ = ["document", "render_text"]


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
    snapshot = store.snapshot(account.name, account.sdi_address)
    late = {
        (item.file_name, item.created)
        for item in store.find_outgoing_in_state(account.name, *lifecycle.AWAITING_SDI)
        if lifecycle.overdue(item.state, _when(item.delivered_at), now)
    }
    warnings = []
    outgoing: list[dict[str, Any]] = snapshot.get("outgoing", [])  # type: ignore[assignment]
    for entry in outgoing:
        entry["overdue"] = (entry.get("file"), entry.get("created")) in late
        if entry["overdue"]:
            warnings.append(
                f"{entry['file']}: no SDI outcome 5 days after delivery to SDI; check the "
                "mailbox and SDI's services, or send the file again under a new name"
            )
    snapshot["warnings"] = warnings
    return dict(snapshot)


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def render_text(doc: dict[str, Any]) -> str:
    """A few readable lines per account."""
    accounts = doc.get("accounts")
    if isinstance(accounts, dict):
        return "\n\n".join(f"[{name}]\n{_text(item)}" for name, item in accounts.items())
    return _text(doc)


def _text(item: dict[str, Any]) -> str:
    outgoing: list[dict[str, Any]] = item.get("outgoing", [])
    states = Counter(str(entry.get("state")) for entry in outgoing)
    lines = [f"SDI address: {item.get('sdi_address')}"]
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    lines.append(f"outgoing: {len(outgoing)}" + (f" ({summary})" if summary else ""))
    for entry in outgoing[-_SHOWN:]:
        lines += _outgoing_lines(entry)
    incoming: list[dict[str, Any]] = item.get("incoming", [])
    lines.append(f"incoming: {len(incoming)}")
    lines += [f"  {e.get('file')} (received {e.get('received')})" for e in incoming[-_SHOWN:]]
    quarantined: list[dict[str, Any]] = item.get("quarantined", [])
    lines.append(f"quarantined: {len(quarantined)}")
    for entry in quarantined[-_SHOWN:]:
        lines.append(f"  {entry.get('what')}: {entry.get('reason')}")
        lines.append(f"    kept at {entry.get('path')}")
    lines += [f"WARNING: {warning}" for warning in item.get("warnings", [])]
    if len(outgoing) > _SHOWN or len(incoming) > _SHOWN or len(quarantined) > _SHOWN:
        lines.append(f"(the last {_SHOWN} of each are shown; --json lists everything)")
    return "\n".join(lines)


_SHOWN = 20


def _outgoing_lines(entry: dict[str, Any]) -> list[str]:
    sdi_id = entry.get("identificativo_sdi")
    head = f"  {entry.get('file')}: {entry.get('state')}"
    head += f", IdentificativoSdI {sdi_id}" if sdi_id else ""
    lines = [head + f" (updated {entry.get('updated')})"]
    if entry.get("meaning"):
        lines.append(f"    {entry['meaning']}")
    if entry.get("state") in _EXPLAINED_BY_LAST_EVENT:
        events: list[dict[str, Any]] = entry.get("events", [])
        if events and events[-1].get("detail"):
            lines.append(f"    {events[-1]['event']}: {events[-1]['detail']}")
    return lines


_EXPLAINED_BY_LAST_EVENT = {"rejected", "sdi-rejected", "not-accepted", "pec-error", "pa-refused"}
