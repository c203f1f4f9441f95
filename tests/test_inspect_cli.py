"""`pecgateway inspect PATH [--json]`: one JSON object or a short summary; exit 0/1; no traceback."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pecgateway import cli, invoice
from tests.test_classify import INVOICE_NAME, invoice_xml, p7m, pec_envelope, zip_of
from tests.test_report import assert_contract_shape


def _inspect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["inspect", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_json_of_an_invoice_is_one_object_and_exit_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, INVOICE_NAME, invoice_xml("7"))
    code, out, err = _inspect(capsys, str(path), "--json")
    assert code == 0
    assert err == ""
    obj = json.loads(out)
    assert_contract_shape(obj)
    assert obj["path"] == str(path)
    assert obj["kind"] == "invoice"
    assert obj["invoice"]["documents"][0]["numero"] == "7"


def test_json_of_a_signed_invoice_says_signed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "IT01234567890_00001.XML.P7M", p7m(invoice_xml()))
    code, out, _ = _inspect(capsys, "--json", str(path))
    assert code == 0
    obj = json.loads(out)
    assert obj["kind"] == "invoice"
    assert obj["invoice"]["signed"] is True


def test_json_of_a_pec_envelope_lists_its_attachments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "busta.eml", pec_envelope({INVOICE_NAME: invoice_xml()}))
    code, out, _ = _inspect(capsys, "--json", str(path))
    assert code == 0
    obj = json.loads(out)
    assert obj["kind"] == "pec"
    assert [(c["filename"], c["kind"]) for c in obj["contents"]] == [(INVOICE_NAME, "invoice")]


def test_text_summary_of_an_archive_lists_its_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "lot.zip", zip_of({INVOICE_NAME: invoice_xml()}))
    code, out, _ = _inspect(capsys, str(path))
    assert code == 0
    assert out.startswith(f"{path}: zip archive\n")
    assert f"    {INVOICE_NAME}: electronic invoice FPR12" in out


def test_malformed_file_exits_1_with_a_message_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "IT01234567890_00001.xml.p7m", b" \n")
    code, out, err = _inspect(capsys, "--json", str(path))
    assert code == 1
    obj = json.loads(out)
    assert obj["kind"] == "malformed"
    assert obj["error"]
    assert err.startswith(f"pecgateway: {path}: damaged or unreadable")
    assert "ask the sender for a new copy" in err


def test_unknown_file_exits_1_and_still_prints_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "photo.jpg", b"\xff\xd8\xff\xe0 not an invoice")
    code, out, err = _inspect(capsys, str(path))
    assert code == 1
    assert out.startswith(f"{path}: not recognised: not an invoice")
    assert err == f"pecgateway: {path}: not understood (see above)\n"


def test_unknown_file_with_json_says_why_once_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "photo.jpg", b"\xff\xd8\xff\xe0 not an invoice")
    code, out, err = _inspect(capsys, "--json", str(path))
    assert code == 1
    assert json.loads(out)["kind"] == "unknown"
    assert err.startswith(f"pecgateway: {path}: not understood: not an invoice")
    assert err.count("not an invoice") == 1
    assert err.count("\n") == 1


def test_damaged_file_in_text_form_says_what_to_do_without_repeating_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "IT01234567890_00001.xml.p7m", b"\x30\x03\x02\x01")
    code, out, err = _inspect(capsys, str(path))
    assert code == 1
    assert f"{path}: damaged or unreadable: " in out
    assert err == (
        f"pecgateway: {path}: damaged or unreadable (see above); ask the sender for a new copy\n"
    )


def test_damaged_file_whose_error_says_what_to_ask_is_not_given_a_second_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, INVOICE_NAME, b"<FatturaElettronica>")
    code, _out, err = _inspect(capsys, "--json", str(path))
    assert code == 1
    assert "ask the sender for the complete file" in err
    assert "a new copy" not in err


@pytest.mark.parametrize(
    ("name", "message"), [("missing.xml", "cannot read the file"), (".", "not a regular file")]
)
def test_unreadable_path_exits_1_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    path = tmp_path / name
    code, out, err = _inspect(capsys, "--json", str(path))
    assert code == 1
    assert out == ""
    assert f"{path}: {message}" in err


def test_a_parser_bug_is_reported_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(data: bytes) -> invoice.Invoice:
        raise KeyError("IdCodice")

    monkeypatch.setattr(invoice, "parse", broken)
    path = _write(tmp_path, INVOICE_NAME, invoice_xml())
    code, out, err = _inspect(capsys, "--json", str(path))
    assert code == 1
    assert json.loads(out)["error"].startswith("internal error: KeyError")
    assert "hit a bug while reading it; please report it" in err


def test_output_on_an_ascii_only_terminal_falls_back_to_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "fattura-perché.xml", invoice_xml())
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="ascii"))
    code = cli.main(["inspect", "--json", str(path)])
    sys.stdout.flush()
    assert code == 0
    assert json.loads(buffer.getvalue())["path"] == str(path)


def test_python_dash_m_pecgateway_inspect_runs_as_a_real_process(tmp_path: Path) -> None:
    path = _write(tmp_path, INVOICE_NAME, invoice_xml())
    run = subprocess.run(
        [sys.executable, "-m", "pecgateway", "inspect", "--json", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["kind"] == "invoice"


def test_inspect_refuses_a_device_instead_of_reading_it_forever(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["inspect", "/dev/zero"]) == 1
    err = capsys.readouterr().err
    assert "/dev/zero: not a regular file" in err
    assert "Traceback" not in err


def test_inspect_json_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    path = _write(tmp_path, INVOICE_NAME, invoice_xml())
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte, as with `| head -0`
    try:
        run = subprocess.run(
            [sys.executable, "-m", "pecgateway", "inspect", "--json", str(path)],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert run.returncode == 141
    assert run.stderr == b""


def test_unwrap_of_a_plain_xml_says_it_is_not_signed_and_copies_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path, INVOICE_NAME + ".p7m", invoice_xml())
    target = tmp_path / "out.xml"
    assert cli.main(["unwrap", str(source), "-o", str(target)]) == 0
    out, err = capsys.readouterr()
    assert (
        out
        == f"{source}: is not signed (plain XML): nothing to unwrap; wrote it unchanged to {target}\n"
    )
    assert err == ""
    assert target.read_bytes() == source.read_bytes()


def test_unwrap_of_a_signed_file_counts_the_signed_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path, INVOICE_NAME + ".p7m", p7m(invoice_xml()))
    assert cli.main(["unwrap", str(source)]) == 0
    assert "extracted from 1 signed layer(s)" in capsys.readouterr().out
    assert (tmp_path / INVOICE_NAME).read_bytes() == invoice_xml()


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_argument_of_every_command_has_a_help_text() -> None:
    missing = [
        f"{name} {action.dest}"
        for name, parser in _parsers(cli._build_parser(), "pecgateway")
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_schemas_install_has_one_destination_option() -> None:
    commands = dict(_parsers(cli._build_parser(), "pecgateway"))
    options = {o for a in commands["pecgateway schemas install"]._actions for o in a.option_strings}
    assert "--to" in options
    assert "--schemas" not in options


def test_inspect_with_stdout_on_a_full_disk_fails_with_a_message_not_a_traceback(
    tmp_path: Path,
) -> None:
    path = tmp_path / INVOICE_NAME
    path.write_bytes(invoice_xml())
    with Path("/dev/full").open("w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "pecgateway", "inspect", "--json", str(path)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert result.returncode == 1
    assert "cannot finish: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr


def test_inspect_with_stdout_closed_exits_cleanly(tmp_path: Path) -> None:
    path = tmp_path / INVOICE_NAME
    path.write_bytes(invoice_xml())
    result = subprocess.run(
        [sys.executable, "-m", "pecgateway", "inspect", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
