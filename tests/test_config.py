"""The configuration file: defaults, every validation with its key path, secrets, several accounts."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from pecgateway.config import (
    DEFAULT_SDI_ADDRESS,
    Account,
    Config,
    ImapConfig,
    Secret,
    Security,
    SmtpConfig,
    config_path,
    credentials_dir,
    load,
)
from pecgateway.errors import ConfigError
from pecgateway.sink import Language

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "pecgateway.example.toml"


def account_toml(name: str = "main", extra: str = "", smtp: str = "", imap: str = "") -> str:
    return f"""
[[accounts]]
name = "{name}"
address = "{name}@pec.example.it"
outbox = "{name}/outbox"
inbox = "{name}/inbox"
{extra}
[accounts.smtp]
host = "smtp.example.it"
password_file = "secret"
{smtp}
[accounts.imap]
host = "imap.example.it"
password_file = "secret"
{imap}
"""


def write_config(tmp_path: Path, text: str, password: str = "s3cret\n") -> Path:
    (tmp_path / "secret").write_text(password, encoding="utf-8")
    path = tmp_path / "pecgateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **kwargs: object) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, account_toml()), environ={})
    (account,) = config.accounts
    assert config.store_path == Path("/var/lib/pecgateway/pecgateway.sqlite3")
    assert config.inbox_language is Language.IT
    assert config.log_level == "info"
    assert account.sdi_address == DEFAULT_SDI_ADDRESS
    assert account.smtp.port == 465
    assert account.smtp.security is Security.TLS
    assert account.smtp.username == "main@pec.example.it"
    assert account.imap.port == 993
    assert account.imap.folder == "INBOX"
    assert account.imap.move_to is None
    assert account.imap.idle is True


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    config = load(
        write_config(tmp_path, 'store_path = "db.sqlite3"\n' + account_toml()), environ={}
    )
    assert config.store_path == tmp_path / "db.sqlite3"
    assert config.accounts[0].outbox == tmp_path / "main" / "outbox"
    assert config.source == tmp_path / "pecgateway.toml"


def test_starttls_defaults_to_the_submission_ports(tmp_path: Path) -> None:
    text = account_toml(smtp='security = "starttls"', imap='security = "starttls"')
    account = load(write_config(tmp_path, text), environ={}).accounts[0]
    assert (account.smtp.port, account.imap.port) == (587, 143)


def test_password_file_is_read_without_its_trailing_newline(tmp_path: Path) -> None:
    account = load(write_config(tmp_path, account_toml()), environ={}).accounts[0]
    assert account.smtp.password.reveal() == "s3cret"


def test_password_never_appears_in_repr(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, account_toml()), environ={})
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config.accounts[0].smtp.password)
    assert repr(Secret("hunter2")) == "Secret('********')"


def test_password_in_the_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = account_toml(smtp='password = "hunter2"')
    message = problems(tmp_path, text, environ={})
    assert "accounts[0] (main).smtp.password: passwords never go in this file" in message
    assert "hunter2" not in message


def test_password_credential_reads_from_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "main-pec").write_text("from-systemd", encoding="utf-8")
    text = account_toml().replace('password_file = "secret"', 'password_credential = "main-pec"')
    config = load(write_config(tmp_path, text), environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.accounts[0].imap.password.reveal() == "from-systemd"


def test_password_credential_without_systemd_says_so(tmp_path: Path) -> None:
    text = account_toml().replace('password_file = "secret"', 'password_credential = "x"')
    message = problems(tmp_path, text, environ={})
    assert (
        "accounts[0] (main).smtp.password_credential: $CREDENTIALS_DIRECTORY is not set" in message
    )


def test_password_credential_reads_from_the_credentials_dir_given(tmp_path: Path) -> None:
    credentials = tmp_path / "by-hand"
    credentials.mkdir()
    (credentials / "main-smtp").write_text("typed-by-root\n", encoding="utf-8")
    text = account_toml().replace('password_file = "secret"', 'password_credential = "main-smtp"')
    config = load(write_config(tmp_path, text), environ={}, credentials_dir=credentials)
    assert config.accounts[0].smtp.password.reveal() == "typed-by-root"


def test_without_reading_secrets_a_missing_password_file_is_no_problem(tmp_path: Path) -> None:
    text = account_toml().replace('password_file = "secret"', 'password_file = "absent"')
    config = load(write_config(tmp_path, text), environ={}, read_secrets=False)
    assert config.accounts[0].smtp.password.reveal() == ""


def test_without_reading_secrets_credentials_need_no_systemd(tmp_path: Path) -> None:
    text = account_toml().replace('password_file = "secret"', 'password_credential = "main-pec"')
    config = load(write_config(tmp_path, text), environ={}, read_secrets=False)
    assert config.accounts[0].imap.password.reveal() == ""


def test_without_reading_secrets_the_password_setting_is_still_checked(tmp_path: Path) -> None:
    text = account_toml().replace('password_file = "secret"', 'password_credential = "a b"')
    message = problems(tmp_path, text, environ={}, read_secrets=False)
    assert "accounts[0] (main).smtp.password_credential: expected a credential name" in message


def test_credentials_dir_prefers_the_argument_then_systemd_then_the_units_folder(
    tmp_path: Path,
) -> None:
    env = {"CREDENTIALS_DIRECTORY": "/run/credentials/pecgateway.service"}
    assert credentials_dir("/given", env, default=tmp_path) == Path("/given")
    assert credentials_dir(None, env, default=tmp_path) == Path(env["CREDENTIALS_DIRECTORY"])
    assert credentials_dir(None, {}, default=tmp_path) == tmp_path
    assert credentials_dir(None, {}, default=tmp_path / "absent") is None


def test_missing_password_file_names_key_and_path(tmp_path: Path) -> None:
    text = account_toml(imap="").replace(
        'host = "imap.example.it"\npassword_file = "secret"',
        'host = "imap.example.it"\npassword_file = "nope"',
    )
    message = problems(tmp_path, text, environ={})
    assert (
        f"accounts[0] (main).imap.password_file: cannot read the password from {tmp_path / 'nope'}"
        in (message)
    )


def test_both_or_neither_password_source_is_an_error(tmp_path: Path) -> None:
    text = account_toml(smtp='password_credential = "x"').replace(
        'host = "imap.example.it"\npassword_file = "secret"', 'host = "imap.example.it"'
    )
    message = problems(tmp_path, text, environ={})
    assert message.count("set exactly one of password_file and password_credential") == 2


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    text = 'log_level = "loud"\nunknown = 1\n' + account_toml(
        name="Bad Name!",
        extra="stable_for_s = -1",
        imap='port = 70000\nidle = "yes"',
        smtp='security = "ssl"\ntimeout_s = 0',
    )
    message = problems(tmp_path, text, environ={})
    expected = [
        'log_level: expected "debug" or "info" or "warning" or "error"',
        "unknown: unknown key",
        "accounts[0].name: expected a name of 1-32 characters",
        "accounts[0].stable_for_s: expected a number of seconds, 0 or more",
        "accounts[0].imap.port: expected an integer from 1 to 65535",
        "accounts[0].imap.idle: expected true or false",
        'accounts[0].smtp.security: expected "tls" or "starttls"',
        "accounts[0].smtp.timeout_s: expected a number of seconds, more than 0",
    ]
    for line in expected:
        assert line in message
    assert re.search(r"\d+ problem\(s\)", message)


def test_required_keys_are_named_when_missing(tmp_path: Path) -> None:
    message = problems(tmp_path, '[[accounts]]\nname = "a"\n[accounts.smtp]\n[accounts.imap]\n')
    for key in ("address", "outbox", "inbox", "smtp.host", "imap.host"):
        assert f"accounts[0] (a).{key}: missing (required)" in message


def test_a_file_without_accounts_is_an_error(tmp_path: Path) -> None:
    message = problems(tmp_path, 'log_level = "info"\n')
    assert "accounts: expected at least one [[accounts]] table" in message


def test_not_toml_names_the_file_once(tmp_path: Path) -> None:
    message = problems(tmp_path, "this is = = not toml")
    assert message.startswith(f"{tmp_path / 'pecgateway.toml'}: not valid TOML")
    assert message.count("pecgateway.toml") == 1


def test_an_account_without_a_valid_name_is_named_by_its_index_only(tmp_path: Path) -> None:
    message = problems(tmp_path, account_toml(name="Bad Name!", imap="port = 0"), environ={})
    assert "accounts[0].imap.port: expected an integer" in message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")


def test_several_accounts_load_in_order(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, account_toml("alpha") + account_toml("beta")), environ={})
    assert [account.name for account in config.accounts] == ["alpha", "beta"]
    assert config.account("beta").address == "beta@pec.example.it"


def test_unknown_account_name_lists_the_known_ones(tmp_path: Path) -> None:
    config = load(write_config(tmp_path, account_toml("alpha")), environ={})
    with pytest.raises(ConfigError, match=r"no account named 'gamma' \(known: alpha\)"):
        config.account("gamma")


def test_account_names_must_be_unique(tmp_path: Path) -> None:
    text = account_toml("alpha") + account_toml("alpha").replace("alpha/", "other/")
    assert "accounts[1] (alpha).name: 'alpha' is also accounts[0]'s name" in problems(
        tmp_path, text
    )


def test_folders_must_be_distinct_between_accounts(tmp_path: Path) -> None:
    text = account_toml("alpha") + account_toml("beta").replace('"beta/inbox"', '"alpha/inbox"')
    assert "accounts[1] (beta).inbox:" in problems(tmp_path, text)


def test_outbox_inside_the_inbox_is_refused(tmp_path: Path) -> None:
    text = account_toml().replace('outbox = "main/outbox"', 'outbox = "main/inbox/out"')
    assert "accounts[0] (main).inbox:" in problems(tmp_path, text)
    assert "use separate folders" in problems(tmp_path, text)


def test_move_to_must_differ_from_the_folder_read(tmp_path: Path) -> None:
    text = account_toml(imap='move_to = "INBOX"')
    assert "accounts[0] (main).imap.move_to:" in problems(tmp_path, text)


def test_ca_file_must_exist(tmp_path: Path) -> None:
    text = account_toml(smtp='ca_file = "ca.pem"')
    assert f"accounts[0] (main).smtp.ca_file: {tmp_path / 'ca.pem'} does not exist" in problems(
        tmp_path, text
    )


def test_ca_file_given_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    config = load(write_config(tmp_path, account_toml(imap='ca_file = "ca.pem"')), environ={})
    assert config.accounts[0].imap.ca_file == tmp_path / "ca.pem"
    assert config.accounts[0].smtp.ca_file is None


def test_config_path_prefers_the_argument(tmp_path: Path) -> None:
    assert config_path("a.toml", {"PECGATEWAY_CONFIG": "b.toml"}) == Path("a.toml")


def test_config_path_falls_back_to_the_environment() -> None:
    assert config_path(None, {"PECGATEWAY_CONFIG": "/etc/p.toml"}) == Path("/etc/p.toml")


def test_config_path_without_either_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PECGATEWAY_CONFIG"):
        config_path(None, {})


def test_example_file_loads_with_the_units_credentials(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in ("main-smtp", "main-imap"):
        (credentials / name).write_text(f"{name}-password\n", encoding="utf-8")
    config = load(write_config(tmp_path, text), environ={}, credentials_dir=credentials)
    assert isinstance(config, Config)
    assert config.accounts[0].name == "main"
    assert config.accounts[0].smtp.password.reveal() == "main-smtp-password"
    assert config.accounts[0].imap.password.reveal() == "main-imap-password"


def _documented_keys(text: str) -> set[str]:
    """Keys set in the example whose block is introduced by a comment line."""
    documented, commented = set(), False
    for line in text.splitlines():
        if line.startswith("#"):
            commented = True
        elif match := re.match(r"([a-z_]+) = ", line):
            if commented:
                documented.add(match[1])
        else:
            commented = False
    return documented


def test_example_file_shows_every_key_with_a_comment() -> None:
    expected = {f.name for f in fields(Config)} - {"accounts", "source"}
    for cls in (Account, SmtpConfig, ImapConfig):
        expected |= {f.name for f in fields(cls)} - {"smtp", "imap", "password"}
    expected |= {"password_credential"}
    documented = _documented_keys(EXAMPLE.read_text(encoding="utf-8"))
    assert expected <= documented, sorted(expected - documented)
    assert "password_file = " in EXAMPLE.read_text(encoding="utf-8")


def test_a_file_not_in_utf8_says_which_byte_and_line_and_to_save_it_as_utf8(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, "")
    path.write_bytes(b'log_level = "info"\nstore_path = "caf\xe8.sqlite3"\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == (f"{path} is not UTF-8 (byte 0xE8 at line 2): save it as UTF-8")


def test_a_byte_order_mark_at_the_start_is_accepted(tmp_path: Path) -> None:
    path = write_config(tmp_path, "")
    path.write_bytes("\ufeff".encode() + account_toml().encode())
    assert load(path).accounts[0].name == "main"


def test_relative_paths_of_a_config_named_relatively_are_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path, account_toml())
    monkeypatch.chdir(tmp_path)
    config = load(Path("pecgateway.toml"))
    assert config.accounts[0].outbox == tmp_path / "main" / "outbox"
