"""The sandbox SDI's memory: assigned addresses, used names, accepted invoices and counters.

Owns the JSON form of that memory and its file (read at start, replaced atomically on save). Decides
nothing: the simulator and its checks read and change it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pecgateway.errors import ConfigError

__all__ = ["Memory", "load", "save"]


@dataclass(slots=True)
class Memory:
    """What SDI remembers between files and runs; every field survives a restart."""

    assigned: dict[str, str]
    used_names: set[str]
    accepted: set[tuple[str, ...]]
    last_identificativo_sdi: int = 10_000_000
    last_message_id: int = 50_000_000
    announced: dict[str, str] = field(default_factory=dict)  # sender -> when it got its address

    def to_json(self) -> dict[str, Any]:
        return {
            "assigned": self.assigned,
            "used_names": sorted(self.used_names),
            "accepted": sorted(list(key) for key in self.accepted),
            "last_identificativo_sdi": self.last_identificativo_sdi,
            "last_message_id": self.last_message_id,
            "announced": self.announced,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Memory:
        return cls(
            dict(data.get("assigned", {})),
            set(data.get("used_names", [])),
            {tuple(key) for key in data.get("accepted", [])},
            int(data.get("last_identificativo_sdi", 10_000_000)),
            int(data.get("last_message_id", 50_000_000)),
            dict(data.get("announced", {})),
        )


def load(path: Path) -> Memory:
    """The memory saved at ``path``; ConfigError (naming the file) when it cannot be read."""
    try:
        return Memory.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"the SDI simulator's memory cannot be read ({exc}); delete the file to start afresh",
            key=str(path),
        ) from exc


def save(memory: Memory, path: Path) -> None:
    """Write ``memory`` to ``path`` through a temporary file, so a reader never sees half of it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(memory.to_json(), indent=1), encoding="utf-8")
    temporary.replace(path)
