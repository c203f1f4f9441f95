"""Pytest fixtures of the service tests (a plugin registered in tests/conftest.py): a real aiosmtpd,
a settable clock, a one-account configuration against it and the session Dovecot, its store.

A module whose account needs other settings overrides `config`; `store` and `outbox_dir` follow it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pecgateway.config import Config
from pecgateway.store import Store
from tests.factory.gateway import Clock, service_config
from tests.factory.smtp_server import SmtpServer, smtp_server

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA
    from pecgateway.sandbox.dovecot import MailAccount

__all__ = ["clock", "config", "outbox_dir", "smtp", "store"]


@pytest.fixture
async def smtp(sandbox_ca: SandboxCA) -> AsyncIterator[SmtpServer]:
    """A real aiosmtpd (TLS and AUTH on) with a certificate of the sandbox CA."""
    pair = sandbox_ca.server
    async with smtp_server(pair.cert_path, pair.key_path, sandbox_ca.ca_file) as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount) -> Config:
    """One account, "main", with the default retry and reconnect times."""
    return service_config(tmp_path, schema_dir, smtp, mail_user)


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    with Store(config.store_path) as opened:
        yield opened


@pytest.fixture
def outbox_dir(config: Config) -> Path:
    folder = config.accounts[0].outbox
    folder.mkdir(parents=True, exist_ok=True)
    return folder
