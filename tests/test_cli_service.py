"""The service commands as a user runs them: run, once, status, check-config (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pecgateway import sample
from tests.factory.gateway import service_config
from tests.factory.smtp_server import SmtpServer

if TYPE_CHECKING:
    from pecgateway.sandbox.dovecot import MailAccount

pytestmark = pytest.mark.servers
NAME = sample.file_name()


async def _pecgateway(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 40
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pecgateway",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout_s):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_check_config_reports_every_problem_with_its_key_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('store_path = 1\n[[accounts]]\nname = "Bad Name"\n', encoding="utf-8")
    code, _out, err = await _pecgateway("check-config", "--config", str(path))
    assert code == 2
    assert "store_path" in err
    assert "accounts[0].name" in err


async def test_check_config_logs_in_to_both_servers(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    code, out, _err = await _pecgateway("check-config", "--config", str(config.source))
    assert code == 0, out
    assert "account main: SMTP: login OK" in out
    assert "account main: IMAP: login OK" in out


async def test_check_config_says_which_server_refused_and_why(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user, imap={"password": "wrong"})
    code, out, err = await _pecgateway("check-config", "--config", str(config.source))
    assert code == 1
    assert "account main: SMTP: login OK" in out
    assert f"account main: IMAP: FAILED: IMAP {mail_user.host}:{mail_user.port}: login as" in out
    assert "wrong" not in out + err
    assert "account main: IMAP" in err


async def test_once_sends_the_outbox_and_status_shows_it(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    outbox = config.accounts[0].outbox
    outbox.mkdir(parents=True)
    (outbox / NAME).write_bytes(sample.fpr12())
    env = {"PECGATEWAY_CONFIG": str(config.source)}
    code, out, err = await _pecgateway("once", env=env)
    assert code == 0, err
    assert len(smtp.received) == 1
    *logs, summary = out.splitlines()
    assert "invoice_sent" in [json.loads(line)["event"] for line in logs]
    assert summary.startswith("outbox: 1 sent, 0 rejected; mailbox: ")
    assert mail_user.password not in out
    code, out, _err = await _pecgateway("status", "--json", env=env)
    assert code == 0
    doc = json.loads(out)
    assert doc["outgoing"][0]["file"] == NAME
    assert doc["outgoing"][0]["state"] == "sent"
    code, out, _err = await _pecgateway("status", env=env)
    assert "outgoing: 1 (1 sent)" in out


async def test_status_of_an_unknown_account_is_a_usage_error(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    code, _out, err = await _pecgateway(
        "status", "--config", str(config.source), "--account", "nope"
    )
    assert code == 2
    assert "no account named 'nope'" in err


async def test_missing_config_path_is_a_usage_error() -> None:
    env = {key: value for key, value in os.environ.items() if key != "PECGATEWAY_CONFIG"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pecgateway",
        "once",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    assert process.returncode == 2
    assert b"PECGATEWAY_CONFIG" in err


async def test_run_notifies_systemd_and_stops_on_sigterm(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(notify_path))
        listener.setblocking(False)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pecgateway",
            "run",
            "--config",
            str(config.source),
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(30):
            first = await loop.sock_recv(listener, 4096)
        assert first == b"READY=1"
        outbox = config.accounts[0].outbox
        (outbox / NAME).write_bytes(sample.fpr12())
        async with asyncio.timeout(30):
            await smtp.data_arrived.wait()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    stopped = [json.loads(line) for line in out.splitlines() if b"service_stopped" in line]
    assert [record["signal"] for record in stopped] == ["SIGTERM"]


def _offline_config(tmp_path: Path, *, store: str = "store.sqlite3", outbox: str = "out") -> Path:
    """Servers that refuse at once (port 9), an SMTP credential and an IMAP password file."""
    path = tmp_path / "pecgateway.toml"
    path.write_text(
        f'store_path = "{store}"\nschema_dir = "schemas"\n'
        f'[[accounts]]\nname = "main"\naddress = "f@pec.example.it"\n'
        f'outbox = "{outbox}"\ninbox = "in"\n'
        '[accounts.smtp]\nhost = "127.0.0.1"\nport = 9\npassword_credential = "main-smtp"\n'
        '[accounts.imap]\nhost = "127.0.0.1"\nport = 9\npassword_file = "absent.password"\n',
        encoding="utf-8",
    )
    return path


def _passwords(folder: Path) -> None:
    """The IMAP password file and the SMTP credential of ``_offline_config``, both in ``folder``."""
    (folder / "absent.password").write_text("pw", encoding="utf-8")
    (folder / "main-smtp").write_text("pw", encoding="utf-8")


async def test_status_needs_no_password_outside_systemd(tmp_path: Path) -> None:
    config = _offline_config(tmp_path)
    code, out, err = await _pecgateway(
        "status", "--config", str(config), env={"CREDENTIALS_DIRECTORY": ""}
    )
    assert code == 0, err
    assert "outgoing: 0" in out
    assert "no store yet" in err
    assert not (tmp_path / "store.sqlite3").exists()


async def test_status_and_once_name_store_path_when_its_folder_is_missing(tmp_path: Path) -> None:
    config = _offline_config(tmp_path, store="missing/store.sqlite3")
    _passwords(tmp_path)
    for command in ("status", "once", "run"):
        code, _out, err = await _pecgateway(
            command, "--config", str(config), env={"CREDENTIALS_DIRECTORY": str(tmp_path)}
        )
        assert code == 2, err
        assert f"store_path: {tmp_path / 'missing' / 'store.sqlite3'}: its folder" in err
        assert "Traceback" not in err


async def test_check_config_reads_credentials_from_the_directory_given(
    tmp_path: Path, schema_dir: Path
) -> None:
    config = _offline_config(tmp_path)
    (tmp_path / "schemas").symlink_to(schema_dir)
    _passwords(tmp_path)
    code, out, _err = await _pecgateway(
        "check-config", "--config", str(config), "--credentials-dir", str(tmp_path)
    )
    assert "configuration OK" in out
    assert f"store_path {tmp_path / 'store.sqlite3'}: OK" in out
    assert f"schema_dir {tmp_path / 'schemas'}: OK" in out
    assert code == 1  # nothing listens on port 9
    assert "account main: SMTP: FAILED" in out


async def test_check_config_says_which_places_are_not_usable(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    config = _offline_config(tmp_path, store="missing/store.sqlite3", outbox="a-file/out")
    _passwords(tmp_path)
    code, out, err = await _pecgateway(
        "check-config", "--config", str(config), "--credentials-dir", str(tmp_path)
    )
    assert code == 2, out + err
    assert f"store_path {tmp_path / 'missing' / 'store.sqlite3'}: FAILED: its folder" in out
    assert f"schema_dir {tmp_path / 'schemas'}: FAILED" in out
    assert "accounts[0] (main).outbox" in out
    assert "accounts[0] (main).inbox" in out
    assert "not usable: store_path, schema_dir, accounts[0] (main).outbox" in err
    assert not (tmp_path / "missing").exists()


def test_status_json_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    import subprocess

    config = _offline_config(tmp_path)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pecgateway", "status", "--json", "--config", str(config)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141
    assert b"Traceback" not in result.stderr
    assert b"BrokenPipe" not in result.stderr


async def test_validate_with_a_config_needs_no_password(tmp_path: Path, schema_dir: Path) -> None:
    config = _offline_config(tmp_path)
    (tmp_path / "schemas").symlink_to(schema_dir)
    invoice = tmp_path / NAME
    invoice.write_bytes(sample.fpr12())
    code, out, err = await _pecgateway(
        "validate", "--config", str(config), str(invoice), env={"CREDENTIALS_DIRECTORY": ""}
    )
    assert code == 0, err
    assert f"{invoice}: OK, ready to send to SDI" in out


async def test_once_exits_1_and_says_what_failed_when_the_mailbox_is_unreachable(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    assert config.source is not None
    text = config.source.read_text(encoding="utf-8")
    config.source.write_text(text.replace(f"port = {mail_user.port}", f"port = {closed_port}"))
    code, out, err = await _pecgateway("once", "--config", str(config.source))
    assert code == 1
    assert "this pass could not finish everything" in err
    assert "account main: mailbox" in err
    assert "Traceback" not in err
    assert out.splitlines()[-1].startswith("outbox: ")


async def test_a_second_instance_on_the_same_store_exits_2_at_once(
    tmp_path: Path, schema_dir: Path, smtp: SmtpServer, mail_user: MailAccount
) -> None:
    from pecgateway import service

    config = service_config(tmp_path, schema_dir, smtp, mail_user)
    config.store_path.parent.mkdir(parents=True, exist_ok=True)
    with service.instance_lock(config.store_path):
        code, _out, err = await _pecgateway("once", "--config", str(config.source))
    assert code == 2
    assert "another pecgateway is already running on" in err
    assert "configuration:" not in err


async def test_a_config_not_in_utf8_is_a_usage_error_for_every_command(tmp_path: Path) -> None:
    config = _offline_config(tmp_path)
    config.write_bytes(config.read_bytes().replace(b'"store.sqlite3"', b'"caf\xe8.sqlite3"'))
    for command in ("status", "check-config", "once"):
        code, _out, err = await _pecgateway(command, "--config", str(config))
        assert code == 2, err
        assert f"{config} is not UTF-8 (byte 0xE8 at line 1): save it as UTF-8" in err
        assert "Traceback" not in err


def test_validate_without_installed_schemas_says_how_to_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pecgateway import cli

    for name in ("STATE_DIRECTORY", "PECGATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    invoice = tmp_path / NAME
    invoice.write_bytes(sample.fpr12())
    code = cli.main(["validate", str(invoice)])
    err = capsys.readouterr().err
    where = tmp_path / "data" / "pecgateway" / "schemas"
    assert code == 2
    assert f"no schemas installed in {where}: " in err
    assert f"`pecgateway schemas install --from DIR_WITH_XSD --to {where}`" in err
    assert err.rstrip().endswith(", or pass --schemas DIR")
    assert "again" not in err
