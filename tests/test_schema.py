"""Installing the official schemas (SHA-256 pinned) and loading them offline."""

from __future__ import annotations

import hashlib
import shutil
import socket
from pathlib import Path

import pytest

from pecgateway import schema
from pecgateway.errors import ConfigError
from tests.conftest import CORPUS, schema_source_dir


def test_pinned_digests_are_sha256_and_canonical_names_are_unique_per_role() -> None:
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in schema.PINNED)
    roles = {f.filename: f.role for f in schema.PINNED.values()}
    assert all(roles[f.filename] == f.role for f in schema.PINNED.values())


def test_install_copies_the_official_files_under_canonical_names(schema_dir: Path) -> None:
    for path in schema_dir.iterdir():
        assert not path.name.startswith("."), "no temporary file is left behind"
        pinned = schema.PINNED[hashlib.sha256(path.read_bytes()).hexdigest()]
        assert pinned.filename == path.name
    assert (schema_dir / "Schema_VFPR12_v1.2.3.xsd").is_file()
    assert (schema_dir / "Schema_VFPA12_V1.2.3.xsd").is_file()


def test_install_returns_what_it_installed(tmp_path: Path) -> None:
    installed = schema.install(schema_source_dir(), tmp_path / "new" / "schemas")
    names = {f.filename for f in installed}
    assert names == {p.name for p in (tmp_path / "new" / "schemas").iterdir()}
    assert {"xmldsig", "notifiche-pa", "notifiche-b2b", "invoice-ordinaria"} <= {
        f.role for f in installed
    }


def test_install_skips_unknown_files_and_names_them_when_nothing_matched(tmp_path: Path) -> None:
    source = tmp_path / "download"
    source.mkdir()
    (source / "readme.txt").write_text("hello")
    (source / "other.xsd").write_text("<schema/>")
    with pytest.raises(ConfigError, match=r"download: no official schema file found") as caught:
        schema.install(source, tmp_path / "target")
    assert "other.xsd" in str(caught.value)
    assert "readme.txt" in str(caught.value)
    assert not (tmp_path / "target").exists()


def test_install_refuses_an_official_name_with_another_digest(tmp_path: Path) -> None:
    source = tmp_path / "download"
    source.mkdir()
    shutil.copy(schema_source_dir() / "MessaggiTypes_v1.1.xsd", source)
    (source / "schema_vfpr12_v1.2.3.xsd").write_bytes(b"<xs:schema>tampered</xs:schema>")
    with pytest.raises(ConfigError, match=r"checksum mismatch.*agenziaentrate.gov.it"):
        schema.install(source, tmp_path / "target")
    assert not (tmp_path / "target").exists(), "nothing is written when a file is refused"


def test_install_accepts_a_single_file_and_ignores_others_next_to_pinned_ones(
    tmp_path: Path,
) -> None:
    source = tmp_path / "download"
    source.mkdir()
    shutil.copy(schema_source_dir() / "Schema_del_file_xml_FatturaPA_v1.2.2.xsd", source)
    (source / "notes.txt").write_text("unrelated")
    installed = schema.install(source, tmp_path / "target")
    assert [f.filename for f in installed] == ["Schema_del_file_xml_FatturaPA_v1.2.2.xsd"]
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == [
        "Schema_del_file_xml_FatturaPA_v1.2.2.xsd"
    ]


def test_install_from_a_missing_source_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nowhere: no such file or directory"):
        schema.install(tmp_path / "nowhere", tmp_path / "target")


@pytest.mark.parametrize(
    ("versione", "expected"),
    [
        ("FPA12", "Schema_VFPA12_V1.2.3.xsd"),
        ("FPR12", "Schema_VFPR12_v1.2.3.xsd"),
        ("FSM10", "Schema_VFSM10_v1.0.2.xsd"),
    ],
)
def test_for_invoice_picks_the_newest_schema_accepting_the_versione(
    schema_dir: Path, versione: str, expected: str
) -> None:
    schemas = schema.load(schema_dir)
    compiled = schemas.for_invoice(versione)
    assert compiled is not None
    assert compiled.url is not None
    assert compiled.url.endswith("/" + expected)
    assert schemas.for_invoice(versione) is compiled, "compiled once, then cached"


@pytest.mark.parametrize("versione", ["1.1", "FPA11", ""])
def test_for_invoice_has_nothing_for_unknown_versions(schema_dir: Path, versione: str) -> None:
    assert schema.load(schema_dir).for_invoice(versione) is None


def test_fpa12_falls_back_to_1_2_2_when_1_2_3_pa_is_not_installed(tmp_path: Path) -> None:
    for name in ("Schema_VFPR12_v1.2.3.xsd", "Schema_del_file_xml_FatturaPA_v1.2.2.xsd"):
        schema.install(schema_source_dir() / name, tmp_path)
    compiled = schema.load(tmp_path).for_invoice("FPA12")
    assert compiled is not None
    assert compiled.url is not None
    assert compiled.url.endswith("/Schema_del_file_xml_FatturaPA_v1.2.2.xsd")


@pytest.mark.parametrize(
    ("flow", "expected"),
    [("PA", "MessaggiTypes_v1.1.xsd"), ("B2B", "MessaggiFatturaTypes_v1.0.xsd"), ("X", None)],
)
def test_for_notification_picks_the_family_schema(
    schema_dir: Path, flow: str, expected: str | None
) -> None:
    compiled = schema.load(schema_dir).for_notification(flow)
    url = compiled.url if compiled is not None else None
    assert (url.rsplit("/", 1)[-1] if url is not None else None) == expected


def test_loading_and_compiling_never_touches_the_network(
    schema_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    schemas = schema.load(schema_dir)
    for versione in ("FPA12", "FPR12", "FSM10"):
        assert schemas.for_invoice(versione) is not None
    assert schemas.for_notification("PA") is not None
    assert schemas.for_notification("B2B") is not None
    assert attempts == []


def test_load_refuses_a_missing_directory(tmp_path: Path) -> None:
    absent = tmp_path / "absent"
    with pytest.raises(ConfigError) as caught:
        schema.load(absent)
    message = str(caught.value)
    assert message.startswith(f"no schemas installed in {absent}: ")
    assert f"`pecgateway schemas install --from DIR_WITH_XSD --to {absent}`" in message
    assert "again" not in message


def test_load_refuses_an_altered_schema(tmp_path: Path) -> None:
    schema.install(schema_source_dir(), tmp_path)
    (tmp_path / "Schema_VFPR12_v1.2.3.xsd").write_bytes(b"<changed/>")
    with pytest.raises(ConfigError, match=r"Schema_VFPR12_v1\.2\.3\.xsd: checksum mismatch"):
        schema.load(tmp_path)


def test_load_needs_at_least_one_invoice_schema(tmp_path: Path) -> None:
    schema.install(schema_source_dir() / "MessaggiTypes_v1.1.xsd", tmp_path)
    with pytest.raises(ConfigError, match="no invoice schema installed in "):
        schema.load(tmp_path)


def test_versions_lists_role_and_version_of_each_file(schema_dir: Path) -> None:
    versions = schema.load(schema_dir).versions
    assert "invoice-ordinaria 1.2.3" in versions
    assert "notifiche-pa 1.1" in versions


@pytest.mark.conformance
@pytest.mark.skipif(not (CORPUS / "other").is_dir(), reason=f"corpus not found at {CORPUS}")
def test_stylesheets_are_installed_and_found_per_format(tmp_path: Path) -> None:
    schema.install(schema_source_dir(), tmp_path)
    installed = schema.install(CORPUS / "other", tmp_path)
    assert {f.role for f in installed} == {"stylesheet"}
    schemas = schema.load(tmp_path)
    assert (
        schemas.stylesheet_for("FPR12") == tmp_path / "Foglio_di_stile_fatturaordinaria_v1.2.2.xsl"
    )
    assert schemas.stylesheet_for("FSM10") == tmp_path / "fatturasemplificata_v1.0.xsl"
    assert schemas.stylesheet_for("SDI11") is None


def test_stylesheet_for_is_none_when_no_stylesheet_is_installed(schema_dir: Path) -> None:
    assert schema.load(schema_dir).stylesheet_for("FPR12") is None


def test_default_dir_follows_systemd_state_directory_then_xdg(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/pecgateway")
    assert schema.default_dir() == Path("/var/lib/pecgateway/schemas")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert schema.default_dir() == tmp_path / "pecgateway" / "schemas"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert schema.default_dir() == tmp_path / ".local" / "share" / "pecgateway" / "schemas"


@pytest.mark.parametrize(("value", "expected"), [("/etc/pg.toml", "/etc/pg.toml"), ("", None)])
def test_config_path_from_env_reads_pecgateway_config(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("PECGATEWAY_CONFIG", value)
    assert schema.config_path_from_env() == expected


def test_config_path_from_env_is_none_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PECGATEWAY_CONFIG", raising=False)
    assert schema.config_path_from_env() is None
