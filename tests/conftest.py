"""Shared fixtures: the schema directory, and the real mail servers (a private Dovecot).

`dovecot` (session) and `mail_user` (function) are documented below, at their definitions. The
service tests' `smtp`, `clock`, `config`, `store` and `outbox_dir` come from the plugin
tests/factory/service_fixtures.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pecgateway.sandbox.ca import SandboxCA
    from pecgateway.sandbox.dovecot import Dovecot, MailAccount

pytest_plugins = ["tests.factory.service_fixtures"]  # smtp, clock, config, store, outbox_dir

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


def schema_source_dir() -> Path:
    """Where the official XSDs come from in tests: $PECGATEWAY_TEST_SCHEMAS or ../shared/corpus/xsd."""
    return Path(os.environ.get("PECGATEWAY_TEST_SCHEMAS", str(CORPUS / "xsd")))


@pytest.fixture(scope="session")
def schema_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The schemas installed with `pecgateway schemas install`; fails loudly when they are missing."""
    from pecgateway import schema

    source = schema_source_dir()
    if not source.is_dir():
        pytest.fail(
            f"the official XSDs are needed and were not found at {source}: set "
            "PECGATEWAY_TEST_SCHEMAS to a directory holding them (see README, 'Schemas')"
        )
    target = tmp_path_factory.mktemp("schemas")
    schema.install(source, target)
    return target


# ---- real mail servers (sandbox infrastructure) -------------------------------------------------
#
# `dovecot` is ONE private Dovecot for the whole test session (pecgateway.sandbox.dovecot.Dovecot),
# started from a temporary directory with a pool of pre-provisioned users (Dovecot re-reads its
# passwd-file at most once a second, so users are never added mid-run). `mail_user` hands each test
# a fresh user of that pool, i.e. an empty, isolated mailbox. Both fail loudly (never skip) when
# Dovecot is not installed, so a missing install step cannot stay green.

MAIL_POOL_SIZE = 300
_POOL = range(1, MAIL_POOL_SIZE + 1)
_mail_users = iter(_POOL)


@pytest.fixture(scope="session")
def sandbox_ca(tmp_path_factory: pytest.TempPathFactory) -> SandboxCA:
    """The sandbox CA (pecgateway.sandbox.ca.SandboxCA) shared by the session's servers.

    `.ca_file` is the PEM to verify the servers' TLS certificates against; `.provider`, `.sdi`,
    `.sogei`, `.supplier` are signing key pairs (`.key_pem`, `.cert_pem`, `.private_key`).
    """
    from pecgateway.sandbox.ca import SandboxCA

    return SandboxCA.load_or_create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def dovecot(sandbox_ca: SandboxCA) -> Iterator[Dovecot]:
    """A running private Dovecot (IMAP on 127.0.0.1) for the whole session.

    Useful members: `.host`, `.port` (implicit TLS), `.starttls_port` (plain + STARTTLS),
    `.ca_file`, `.account(user)`, `.append(user, raw, mailbox="INBOX")` (doveadm save),
    `.imap_append(user, raw)` (IMAP APPEND), `.count(user, mailbox="INBOX")`, `.pids()`.
    Mailboxes INBOX, Sent and Archive exist for every user; IDLE, UIDPLUS and MOVE are offered.
    """
    import shutil
    import tempfile

    from pecgateway.sandbox.dovecot import INSTALL_HINT, Dovecot

    if shutil.which("dovecot") is None:
        pytest.fail(INSTALL_HINT)
    users = {f"user{n:04d}@pec.sandbox.test": f"pw-{n:04d}-secret" for n in _POOL}
    # not under pytest's tmp root: it is mode 0700 and Dovecot's helpers must traverse the path
    directory = Path(tempfile.mkdtemp(prefix="pecgateway-test-dovecot-"))
    server = Dovecot(directory, users, ca=sandbox_ca)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailAccount:
    """A fresh, empty mailbox of the session's Dovecot, as a MailAccount.

    Fields: `user` (also a PEC-like address, e.g. user0007@pec.sandbox.test), `password`, `host`
    ("127.0.0.1"), `port` (IMAPS, implicit TLS), `starttls_port` (IMAP + STARTTLS), `ca_file` (the
    CA PEM to verify the server certificate; verification always on). Put mail in it with
    `dovecot.append(mail_user.user, raw)`.
    """
    try:
        number = next(_mail_users)
    except StopIteration:
        pytest.fail(f"the Dovecot user pool is exhausted: raise MAIL_POOL_SIZE ({MAIL_POOL_SIZE})")
    return dovecot.account(f"user{number:04d}@pec.sandbox.test")


@pytest.fixture
def public_tmp_path() -> Iterator[Path]:
    """A temporary directory (mode 0755) under the system temp dir, removed afterwards.

    Use it instead of `tmp_path` for anything a Dovecot of its own runs from: pytest's tmp root is
    mode 0700, which Dovecot's unprivileged helper processes cannot traverse.
    """
    import shutil
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="pecgateway-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
