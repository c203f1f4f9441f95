"""`pecgateway sandbox` as a user runs it: a subprocess on real Dovecot and aiosmtpd.

The issue's done-when: a valid invoice sent with plain smtplib gets ACCETTAZIONE, CONSEGNA and an RC
from the newly assigned sdiNN; an invalid one an NS; a second file to sdi01 no answer (and the log
says why); deliver, inject; SIGTERM leaves no process behind.
"""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from pecgateway import classify, config, pec, sample
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.control import ControlError, Request, send_request
from tests.factory import pecmail
from tests.factory.e2e import alive, descendants, wait_ready
from tests.test_sandbox_follow import rc_from

pytestmark = pytest.mark.servers

SDI = "sdi01@pec.fatturapa.it"
SDI03 = "sdi03@pec.fatturapa.it"
WAIT_S = 30.0


def _pecgateway(*args: str) -> list[str]:
    return [sys.executable, "-m", "pecgateway", *args]


@dataclass
class Running:
    directory: Path
    process: subprocess.Popen[bytes]

    @property
    def info(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.directory / "sandbox.json").read_text())
        return loaded

    def _server(self, name: str) -> dict[str, object]:
        value = self.info[name]
        assert isinstance(value, dict)
        return value

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.info["ca_cert"]))

    def send(self, file_name: str, data: bytes, to: str = SDI) -> str:
        smtp = self._server("smtp")
        message = EmailMessage()
        message["From"] = str(self.info["pec_address"])
        message["To"] = to
        message["Subject"] = file_name
        message["Message-ID"] = make_msgid(domain="pec.sandbox.test")
        message.set_content("Invio fattura elettronica.")
        message.add_attachment(data, "application", "octet-stream", filename=file_name)
        with smtplib.SMTP_SSL(
            str(smtp["host"]), int(str(smtp["port"])), context=self.context(), timeout=10
        ) as client:
            client.login(str(smtp["user"]), str(smtp["password"]))
            client.send_message(message)
        return str(message["Message-ID"])

    def mailbox(self) -> list[bytes]:
        imap = self._server("imap")
        with imaplib.IMAP4_SSL(
            str(imap["host"]), int(str(imap["port"])), ssl_context=self.context(), timeout=10
        ) as client:
            client.login(str(imap["user"]), str(imap["password"]))
            client.select("INBOX", readonly=True)
            _, found = client.uid("SEARCH", "ALL")
            raws = []
            for uid in found[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                assert isinstance(parts[0], tuple)
                raws.append(parts[0][1])
            return raws

    def wait_for(self, count: int) -> list[pec.PecMessage]:
        deadline = time.monotonic() + WAIT_S
        raws = self.mailbox()
        while len(raws) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            raws = self.mailbox()
        return [pec.parse(raw) for raw in raws]

    def wait_for_log(self, event: str) -> dict[str, object]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for line in (self.directory / "sandbox.log").read_text().splitlines():
                record: dict[str, object] = json.loads(line)
                if record.get("event") == event:
                    return record
            time.sleep(0.1)
        raise AssertionError(f"no {event} in sandbox.log")


def _launch(directory: Path, schema_dir: Path, *options: str) -> Running:
    """``options``: e.g. ``--first-address-grace-s 0`` where sdi01 must stop working at once."""
    process = subprocess.Popen(
        _pecgateway(
            "sandbox",
            "--dir",
            str(directory),
            "--schemas",
            str(schema_dir),
            "--delays",
            "fast",
            *options,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_ready(process, WAIT_S)
    except BaseException:
        _stop(process)
        raise
    return Running(directory, process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    if process.stdout is not None:
        process.stdout.close()


NO_GRACE = ("--first-address-grace-s", "0")


@contextlib.contextmanager
def _running(
    public_tmp_path: Path, schema_dir: Path, ca: SandboxCA, *options: str
) -> Iterator[Running]:
    directory = public_tmp_path / "sandbox"
    shutil.copytree(ca.directory, directory / "ca")  # reused: no key generation
    running = _launch(directory, schema_dir, *options)
    try:
        yield running
    finally:
        _stop(running.process)


@pytest.fixture
def sandbox(public_tmp_path: Path, schema_dir: Path, sandbox_ca: SandboxCA) -> Iterator[Running]:
    with _running(public_tmp_path, schema_dir, sandbox_ca) as running:
        yield running


@pytest.fixture
def sandbox_without_grace(
    public_tmp_path: Path, schema_dir: Path, sandbox_ca: SandboxCA
) -> Iterator[Running]:
    """SDI answers sdi01 only until its first answer went out (no grace period)."""
    with _running(public_tmp_path, schema_dir, sandbox_ca, *NO_GRACE) as running:
        yield running


def _attachment_kinds(message: pec.PecMessage) -> list[str]:
    kinds = []
    for attachment in message.attachments:
        node = classify.classify(attachment.data, attachment.filename)
        notification = node.notification
        kinds.append(notification.type.value if notification else node.kind.value)
    return kinds


def test_valid_invoice_gets_accettazione_consegna_and_rc_from_the_assigned_address(
    sandbox: Running,
) -> None:
    our_id = sandbox.send(sample.file_name(progressivo="00001"), sample.fpr12())
    accettazione, consegna, answer = sandbox.wait_for(3)
    assert accettazione.type is pec.PecType.ACCETTAZIONE
    assert accettazione.riferimento_message_id == our_id
    assert consegna.type is pec.PecType.AVVENUTA_CONSEGNA
    assert consegna.riferimento_message_id == our_id
    assert answer.type is pec.PecType.POSTA_CERTIFICATA
    assert answer.sdi_address is not None
    assert answer.sdi_address != SDI
    assert _attachment_kinds(answer) == ["RC"]


def test_invalid_invoice_gets_ns_00200(sandbox: Running) -> None:
    sandbox.send(sample.file_name(progressivo="00002"), b"<FatturaElettronica")
    answer = sandbox.wait_for(3)[2]
    (attachment,) = answer.attachments
    notification = classify.classify(attachment.data, attachment.filename).notification
    assert notification is not None
    assert notification.type.value == "NS"
    assert [error.codice for error in notification.errors] == ["00200"]


def test_second_file_to_sdi01_after_the_assignment_gets_no_answer_and_the_log_says_why(
    sandbox_without_grace: Running,
) -> None:
    sandbox = sandbox_without_grace
    sandbox.send(sample.file_name(progressivo="00001"), sample.fpr12())
    sandbox.wait_for(3)
    second = sample.fpr12(progressivo_invio="00002", numero="2")
    sandbox.send(sample.file_name(progressivo="00002"), second)
    record = sandbox.wait_for_log("sdi_ignored_wrong_address")
    assert record["got"] == SDI
    assert "assigned" in str(record["reason"])
    types = [m.type for m in sandbox.wait_for(5)]
    assert types[3:] == [pec.PecType.ACCETTAZIONE, pec.PecType.AVVENUTA_CONSEGNA]


def test_a_second_file_to_sdi01_within_the_grace_after_the_first_answer_is_answered(
    sandbox: Running,
) -> None:
    """Files sent in one go all go to sdi01 (the sender cannot know sdiNN yet): all are answered."""
    sandbox.send(sample.file_name(progressivo="00001"), sample.fpr12())
    first = sandbox.wait_for(3)[2]
    second = sample.fpr12(progressivo_invio="00002", numero="2")
    sandbox.send(sample.file_name(progressivo="00002"), second)
    (answer,) = [m for m in sandbox.wait_for(6)[3:] if m.type is pec.PecType.POSTA_CERTIFICATA]
    assert answer.sdi_address == first.sdi_address != SDI
    assert _attachment_kinds(answer) == ["RC"]
    assert sandbox.wait_for_log("sandbox_ready")["first_address_grace_s"] == 60.0


def test_deliver_brings_a_supplier_invoice_with_its_metadata(
    sandbox: Running, tmp_path: Path
) -> None:
    invoice = tmp_path / "IT09876543210_A0001.xml"
    invoice.write_bytes(sample.fpr12(transmitter="IT09876543210", progressivo_invio="A0001"))
    result = subprocess.run(
        _pecgateway("sandbox", "deliver", "--dir", str(sandbox.directory), str(invoice)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (envelope,) = sandbox.wait_for(1)
    assert envelope.type is pec.PecType.POSTA_CERTIFICATA
    assert envelope.oggetto is not None
    assert envelope.oggetto.startswith("Invio File ")
    assert sorted(_attachment_kinds(envelope)) == ["MT", "invoice"]


def test_inject_appends_the_message_unchanged(sandbox: Running, tmp_path: Path) -> None:
    raw = b"From: someone@example.it\r\nSubject: raw\r\nX-Odd:  kept  as is\r\n\r\nbody\r\n"
    path = tmp_path / "message.eml"
    path.write_bytes(raw)
    result = subprocess.run(
        _pecgateway("sandbox", "inject", "--dir", str(sandbox.directory), str(path)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sandbox.mailbox() == [raw]


def test_inject_of_an_empty_or_blank_file_is_refused_before_appending_and_says_why(
    sandbox: Running, tmp_path: Path
) -> None:
    for content in (b"", b" \r\n\t\n"):
        path = tmp_path / "message.eml"
        path.write_bytes(content)
        result = subprocess.run(
            _pecgateway("sandbox", "inject", "--dir", str(sandbox.directory), str(path)),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert f"{path}: the file is empty" in result.stderr
        assert "nothing was appended" in result.stderr
        assert "b'" not in result.stderr
        assert 'b"' not in result.stderr
    control = sandbox.info["control"]
    assert isinstance(control, dict)
    request = Request("inject", "x.eml", b"\r\n")  # another client of the control channel
    with pytest.raises(ControlError, match="the message is empty"):
        send_request(int(str(control["port"])), str(control["token"]), request)
    assert sandbox.mailbox() == []


def _inject(sandbox: Running, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _pecgateway("sandbox", "inject", "--dir", str(sandbox.directory), str(path)),
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_injected_sdi_message_from_another_sdinn_moves_the_address_sdi_answers_on(
    sandbox_without_grace: Running, tmp_path: Path, sandbox_ca: SandboxCA
) -> None:
    """Real SDI may write from a new sdiNN; the gateway learns it (from SDI's RC about our file),
    and SDI expects files there."""
    sandbox = sandbox_without_grace
    sandbox.send(sample.file_name(progressivo="00001"), sample.fpr12())
    assigned = sandbox.wait_for(3)[2].sdi_address
    moved = "sdi04@pec.fatturapa.it" if assigned == "sdi03@pec.fatturapa.it" else SDI03
    user = str(sandbox.info["pec_address"])
    path = tmp_path / "from-another-sdi.eml"
    path.write_bytes(rc_from(sandbox_ca, moved, sample.file_name(progressivo="00001"), user))
    result = _inject(sandbox, path)
    assert result.returncode == 0, result.stderr
    assert f"SDI now answers files sent to {moved}" in result.stdout
    record = sandbox.wait_for_log("sdi_address_moved")
    assert (record["old"], record["new"]) == (assigned, moved)
    assert "injected" in str(record["reason"])
    second = sample.fpr12(progressivo_invio="00002", numero="2")
    sandbox.send(sample.file_name(progressivo="00002"), second, to=moved)
    answers = [m for m in sandbox.wait_for(7)[4:] if m.type is pec.PecType.POSTA_CERTIFICATA]
    assert [(m.sdi_address, _attachment_kinds(m)) for m in answers] == [(moved, ["RC"])]


def test_an_injected_message_that_is_not_from_sdi_moves_no_address(
    sandbox: Running, tmp_path: Path
) -> None:
    path = tmp_path / "receipt.eml"
    path.write_bytes(pecmail.build_accettazione())
    assert _inject(sandbox, path).returncode == 0
    assert len(sandbox.mailbox()) == 1
    lines = (sandbox.directory / "sandbox.log").read_text()
    assert "message_injected" in lines
    assert "sdi_address_moved" not in lines


def test_deliver_of_a_missing_file_fails_naming_it(sandbox: Running, tmp_path: Path) -> None:
    missing = tmp_path / "IT01234567890_99999.xml"
    result = subprocess.run(
        _pecgateway("sandbox", "deliver", "--dir", str(sandbox.directory), str(missing)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert str(missing) in result.stderr


def test_inject_without_a_running_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    path = tmp_path / "message.eml"
    path.write_bytes(b"Subject: x\r\n\r\nbody\r\n")
    result = subprocess.run(
        _pecgateway("sandbox", "inject", "--dir", str(tmp_path / "none"), str(path)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "pecgateway sandbox --dir" in result.stderr


def test_written_files_are_a_loadable_config_and_the_contract_json(sandbox: Running) -> None:
    loaded = config.load(sandbox.directory / "pecgateway.toml")
    info = sandbox.info
    assert set(info) >= {"imap", "smtp", "ca_cert", "pec_address"}
    for server in ("imap", "smtp"):
        entry = info[server]
        assert isinstance(entry, dict)
        assert set(entry) == {"host", "port", "starttls_port", "user", "password"}
    assert loaded.accounts[0].address == info["pec_address"]
    assert loaded.accounts[0].outbox == sandbox.directory / "outbox"


def test_sigterm_stops_the_sandbox_and_leaves_no_process_behind(sandbox: Running) -> None:
    sandbox.send(sample.file_name(progressivo="00001"), sample.fpr12())
    sandbox.wait_for(3)
    processes = descendants(sandbox.process.pid)
    assert processes, "Dovecot should be running under the sandbox"
    sandbox.process.send_signal(signal.SIGTERM)
    assert sandbox.process.wait(30) == 0
    assert [pid for pid in processes if alive(pid)] == []
    assert not (sandbox.directory / "sandbox.json").exists()


def test_missing_dovecot_says_how_to_install_it(tmp_path: Path) -> None:
    environment = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        _pecgateway("sandbox", "--dir", str(tmp_path / "sandbox")),
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert result.returncode == 2
    assert "apt-get install dovecot-imapd" in result.stderr


def test_control_request_with_a_wrong_token_is_refused(sandbox: Running) -> None:
    control = sandbox.info["control"]
    assert isinstance(control, dict)
    request = Request("inject", "x.eml", b"Subject: x\r\n\r\nbody\r\n")
    with pytest.raises(ControlError, match="token"):
        send_request(int(str(control["port"])), "not-the-token", request)
    assert sandbox.mailbox() == []


def test_without_usable_schemas_the_sandbox_refuses_to_start_and_says_how(
    tmp_path: Path,
) -> None:
    environment = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    environment.pop("STATE_DIRECTORY", None)
    result = subprocess.run(
        _pecgateway("sandbox", "--dir", str(tmp_path / "sandbox")),
        capture_output=True,
        text=True,
        check=False,
        env=environment,
    )
    assert result.returncode == 2
    assert "pecgateway schemas install --from" in result.stderr
    assert "--schemas DIR" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "sandbox").exists()


@pytest.mark.parametrize("before", [True, False], ids=["dir-before-command", "dir-after-command"])
def test_deliver_takes_dir_before_or_after_the_sub_command(tmp_path: Path, before: bool) -> None:
    path = tmp_path / sample.file_name()
    path.write_bytes(sample.fpr12())
    where = ["--dir", str(tmp_path / "none")]
    argv = (
        ["sandbox", *where, "deliver", str(path)]
        if before
        else ["sandbox", "deliver", *where, str(path)]
    )
    result = subprocess.run(_pecgateway(*argv), capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert f"no running sandbox in {tmp_path / 'none'}" in result.stderr


def test_deliver_without_dir_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    result = subprocess.run(
        _pecgateway("sandbox", "deliver", str(tmp_path / "x.xml")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--dir DIR is required" in result.stderr


# ---- a restart in the same directory --------------------------------------------------------------


def _ports(running: Running) -> dict[str, int]:
    info = running.info
    return {
        f"{server}{suffix}": int(str(entry[key]))
        for server in ("imap", "smtp")
        if isinstance(entry := info[server], dict)
        for suffix, key in (("", "port"), ("_starttls", "starttls_port"))
    }


def _send_with_config(loaded: config.Config, file_name: str, data: bytes) -> None:
    """What the gateway does with the written configuration: TLS verified against its ca_file."""
    smtp = loaded.accounts[0].smtp
    context = ssl.create_default_context(cafile=str(smtp.ca_file))
    message = EmailMessage()
    message["From"] = loaded.accounts[0].address
    message["To"] = SDI
    message["Subject"] = file_name
    message["Message-ID"] = make_msgid(domain="pec.sandbox.test")
    message.set_content("Invio fattura elettronica.")
    message.add_attachment(data, "application", "octet-stream", filename=file_name)
    with smtplib.SMTP_SSL(smtp.host, smtp.port, context=context, timeout=10) as client:
        client.login(smtp.username, smtp.password.reveal())
        client.send_message(message)


def _log_events(directory: Path, event: str) -> list[dict[str, object]]:
    lines = (directory / "sandbox.log").read_text().splitlines()
    return [record for line in lines if (record := json.loads(line)).get("event") == event]


def test_restart_keeps_the_ports_the_config_the_mailbox_and_sdis_memory(
    public_tmp_path: Path, schema_dir: Path, sandbox_ca: SandboxCA
) -> None:
    directory = public_tmp_path / "sandbox"
    shutil.copytree(sandbox_ca.directory, directory / "ca")
    first = _launch(directory, schema_dir, *NO_GRACE)
    try:
        first.send(sample.file_name(progressivo="00001"), sample.fpr12())
        before = first.wait_for(3)
        ports = _ports(first)
    finally:
        _stop(first.process)
    toml = (directory / "pecgateway.toml").read_bytes()
    loaded = config.load(directory / "pecgateway.toml")  # as a gateway loaded it on the first run
    second = _launch(directory, schema_dir, *NO_GRACE)
    try:
        assert _ports(second) == ports
        assert (directory / "pecgateway.toml").read_bytes() == toml
        assert not (directory / "pecgateway.toml.bak").exists()
        assert [m.identificativo for m in second.wait_for(3)] == [m.identificativo for m in before]
        second_invoice = sample.fpr12(progressivo_invio="00002", numero="2")
        _send_with_config(loaded, sample.file_name(progressivo="00002"), second_invoice)
        record = second.wait_for_log("sdi_ignored_wrong_address")  # SDI remembers sdiNN
        types = [m.type for m in second.wait_for(5)]
    finally:
        _stop(second.process)
    assert record["got"] == SDI
    assert types[3:] == [pec.PecType.ACCETTAZIONE, pec.PecType.AVVENUTA_CONSEGNA]
    assert _log_events(directory, "sandbox_ports_changed") == []
    assert len(_log_events(directory, "sandbox_config_kept")) == 1


def test_restart_with_a_port_taken_moves_it_rewrites_the_config_and_says_so(
    public_tmp_path: Path, schema_dir: Path, sandbox_ca: SandboxCA
) -> None:
    directory = public_tmp_path / "sandbox"
    shutil.copytree(sandbox_ca.directory, directory / "ca")
    first = _launch(directory, schema_dir)
    ports = _ports(first)
    _stop(first.process)
    old_toml = (directory / "pecgateway.toml").read_text()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["smtp"]))
        squatter.listen()
        second = _launch(directory, schema_dir)
        try:
            moved = _ports(second)
            second.send(sample.file_name(progressivo="00001"), sample.fpr12())
            assert second.wait_for(1)[0].type is pec.PecType.ACCETTAZIONE
        finally:
            _stop(second.process)
    assert moved["smtp"] != ports["smtp"]
    assert {k: v for k, v in moved.items() if k != "smtp"} == {
        k: v for k, v in ports.items() if k != "smtp"
    }
    (changed,) = _log_events(directory, "sandbox_ports_changed")
    assert changed["changes"] == {"smtp": f"{ports['smtp']} -> {moved['smtp']}"}
    (rewritten,) = _log_events(directory, "sandbox_config_rewritten")
    assert rewritten["changes"] == {"smtp": f"{ports['smtp']} -> {moved['smtp']}"}
    assert config.load(directory / "pecgateway.toml").accounts[0].smtp.port == moved["smtp"]
    assert (directory / "pecgateway.toml.bak").read_text() == old_toml


def test_a_second_sandbox_in_the_same_directory_is_refused(
    sandbox: Running, schema_dir: Path
) -> None:
    toml = (sandbox.directory / "pecgateway.toml").read_bytes()
    result = subprocess.run(
        _pecgateway("sandbox", "--dir", str(sandbox.directory), "--schemas", str(schema_dir)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "a sandbox already runs in" in result.stderr
    assert (sandbox.directory / "pecgateway.toml").read_bytes() == toml
    assert sandbox.mailbox() == []


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_grace_that_is_not_seconds_is_a_usage_error_naming_the_option(
    tmp_path: Path, value: str
) -> None:
    result = subprocess.run(
        _pecgateway("sandbox", "--dir", str(tmp_path / "sb"), "--first-address-grace-s", value),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--first-address-grace-s" in result.stderr
    assert "not a number of seconds" in result.stderr
    assert not (tmp_path / "sb").exists()
