"""The official XSDs and stylesheets: installing them (SHA-256 pinned) and loading them offline.

Owns the schema directory. Installs only files whose digest is pinned below, under canonical names,
atomically. Loads them with xmlschema so that nothing is ever fetched from the network: the xmldsig
import is answered by the copy bundled with xmlschema, remote locations are refused.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xmlschema

from pecgateway.errors import ConfigError

__all__ = [
    "PINNED",
    "SchemaFile",
    "SchemaSet",
    "config_path_from_env",
    "default_dir",
    "install",
    "load",
]

MAX_SOURCE_BYTES = 4 * 1024 * 1024
_DSIG = Path(xmlschema.__file__).parent / "schemas" / "DSIG" / "xmldsig-core-schema.xsd"
_DOWNLOAD_HINT = (
    "download the official schemas from agenziaentrate.gov.it (Fatturazione elettronica, "
    "Schemi e specifiche tecniche) and run `pecgateway schemas install --from DIR`"
)
_ORDINARIA = ("FPA12", "FPR12")


def _not_installed(what: str, schema_dir: Path) -> ConfigError:
    return ConfigError(
        f"no {what} installed in {schema_dir}: download the official XSDs from "
        "agenziaentrate.gov.it (Fatturazione elettronica, Schemi e specifiche tecniche) and "
        f"install them with `pecgateway schemas install --from DIR_WITH_XSD --to {schema_dir}`"
    )


@dataclass(frozen=True, slots=True)
class SchemaFile:
    """A pinned file: what it is (``role``), its version, its canonical name, the formats it fits."""

    role: str  # invoice-ordinaria | invoice-semplificata | notifiche-pa | notifiche-b2b | xmldsig | stylesheet
    version: str
    filename: str
    formats: tuple[str, ...] = ()


def _pin(role: str, version: str, filename: str, *formats: str) -> SchemaFile:
    return SchemaFile(role, version, filename, formats)


PINNED: Mapping[str, SchemaFile] = {
    "d231463b486d826154dd5d4099114212e5e8ba54843522c9d70320ee128114c7": _pin(
        "invoice-ordinaria", "1.2.3", "Schema_VFPA12_V1.2.3.xsd", "FPA12"
    ),
    "7e722b21ac74722e367725274704942ca0a66ccfa801784fbb73109c794f3fc8": _pin(
        "invoice-ordinaria", "1.2.3", "Schema_VFPR12_v1.2.3.xsd", "FPR12"
    ),
    "818ae9a63c778bcad35001a10298ac7e7ff317444c687c1d433c9eae5ab6aaf6": _pin(
        "invoice-ordinaria", "1.2.2", "Schema_del_file_xml_FatturaPA_v1.2.2.xsd", *_ORDINARIA
    ),
    "547de9ab569b59e22793f29d8938b9e5654590a30a19d21ca94726ac8c1f2a19": _pin(
        "invoice-ordinaria", "1.2.1a", "Schema_VFPR121a.xsd", *_ORDINARIA
    ),
    "8e0ac8d22f7bd93ae68dfa4830f6fe9e03f5ea14eee95184161a324772432125": _pin(
        "invoice-ordinaria", "1.2.1", "Schema_del_file_xml_FatturaPA_v1.2.1.xsd", *_ORDINARIA
    ),
    "c19d7a1f8e17984d6bc02bb678e2458c3520a4438283001a3a6adbd6d9303751": _pin(
        "invoice-ordinaria", "1.2", "Schema_VFPR12.xsd", *_ORDINARIA
    ),
    "0441bec5a5e39fae3cdf578bd89360aec51b99ca7edeaddcc31485b8e61fcef6": _pin(
        "invoice-semplificata", "1.0.2", "Schema_VFSM10_v1.0.2.xsd", "FSM10"
    ),
    "100a46470a9f71c6f69e1ad4d89fba8ee92092d0f6e3e655d8ae5cdeb4d889ea": _pin(
        "invoice-semplificata", "1.0.1", "Schema_VFSM10.xsd", "FSM10"
    ),
    "6885c70b10593a42a1278fd4bb90386fa47b6c62a8557b80c71a1a0bf215ea6d": _pin(
        "notifiche-pa", "1.1", "MessaggiTypes_v1.1.xsd"
    ),
    # the same schema with trailing whitespace removed (another public copy)
    "0efe7039808088d5661cde091f58f8d02c03ec61d3816301b0f1ccb883d11e48": _pin(
        "notifiche-pa", "1.1", "MessaggiTypes_v1.1.xsd"
    ),
    "24f91e8dd3839fee76b06cfd3dbbca74c71822fe6d2b66545d065a313ded7359": _pin(
        "notifiche-b2b", "1.0", "MessaggiFatturaTypes_v1.0.xsd"
    ),
    "76e4a6d9c876e11c2d9230e084fa28220968c7361d1ac671f17d321e8fc7de87": _pin(
        "xmldsig", "2002", "xmldsig-core-schema.xsd"
    ),
    "144714a380ebe3191b85778565cc1741897aade7073b6e6d76841f8cee54498e": _pin(
        "stylesheet", "1.2.2", "Foglio_di_stile_fatturaordinaria_v1.2.2.xsl", *_ORDINARIA
    ),
    "7643363e904c000975c3a32994ce8354c0d42aa61c3d29874a176b59f10ab79e": _pin(
        "stylesheet", "1.2.1", "fatturaPA_v1.2.1.xsl", *_ORDINARIA
    ),
    "d6ea5cef7a5aa5d852889362dea82d30b162b6fe49a22eb90f47d080deb0c2c2": _pin(
        "stylesheet", "1.0", "fatturasemplificata_v1.0.xsl", "FSM10"
    ),
    "e553ee07246a343e6ef8daf087aadefd28330245a17893bba4ecec437c86c8ca": _pin(
        "stylesheet", "AssoSoftware", "FoglioStileAssoSoftware.xsl", *_ORDINARIA, "FSM10"
    ),
}
_PINNED_NAMES: dict[str, set[str]] = {}
for _digest, _file in PINNED.items():
    _PINNED_NAMES.setdefault(_file.filename, set()).add(_digest)
_NAME_KEYS = {name.casefold(): name for name in _PINNED_NAMES}
_INVOICE_ROLES = {"FPA12": "invoice-ordinaria", "FPR12": "invoice-ordinaria"}
_NOTIFICATION_ROLES = {"PA": "notifiche-pa", "B2B": "notifiche-b2b"}


def _version_key(version: str) -> tuple[int, ...]:
    numbers = tuple(int(part) for part in re.findall(r"\d+", version))
    return (*numbers, 1 if version[-1:].isalpha() else 0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- environment ---------------------------------------------------------------------------------


def default_dir() -> Path:
    """Where schemas live when neither ``--schemas`` nor a configuration says otherwise.

    Under systemd with ``StateDirectory=pecgateway`` (``$STATE_DIRECTORY``, normally
    ``/var/lib/pecgateway``) it is ``$STATE_DIRECTORY/schemas``; otherwise the XDG data directory,
    ``$XDG_DATA_HOME/pecgateway/schemas`` (``~/.local/share/pecgateway/schemas``).
    """
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "schemas"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pecgateway" / "schemas"


def config_path_from_env() -> str | None:
    """``$PECGATEWAY_CONFIG`` when set and not empty, else None."""
    return os.environ.get("PECGATEWAY_CONFIG") or None


# ---- install -------------------------------------------------------------------------------------


def _candidates(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ConfigError(f"{source}: no such file or directory; {_DOWNLOAD_HINT}")
    return sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))


def _classify(paths: list[Path]) -> tuple[dict[str, tuple[Path, SchemaFile]], list[str]]:
    chosen: dict[str, tuple[Path, SchemaFile]] = {}
    skipped: list[str] = []
    for path in paths:
        digest = _sha256(path) if path.stat().st_size <= MAX_SOURCE_BYTES else ""
        pinned = PINNED.get(digest)
        if pinned is not None:
            chosen[pinned.filename] = (path, pinned)
        elif path.name.casefold() in _NAME_KEYS:
            raise ConfigError(
                f"{path}: checksum mismatch (SHA-256 {digest or 'not computed: file too large'}) "
                f"for an official file name: the file is damaged or not the official one; "
                f"download it again from agenziaentrate.gov.it"
            )
        else:
            skipped.append(path.name)
    return chosen, skipped


def _write_atomically(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(target)


def install(source: Path, data_dir: Path) -> list[SchemaFile]:
    """Copy the pinned files found in ``source`` (a directory or one file) into ``data_dir``.

    Unknown files are skipped; ConfigError when nothing installable is found or when a file that
    carries an official name has another digest (nothing is written in that case).
    """
    try:
        chosen, skipped = _classify(_candidates(source))
        if not chosen:
            unknown = f" (skipped as unknown: {', '.join(skipped)})" if skipped else ""
            raise ConfigError(f"{source}: no official schema file found{unknown}; {_DOWNLOAD_HINT}")
        data_dir.mkdir(parents=True, exist_ok=True)
        for name, (path, _) in sorted(chosen.items()):
            _write_atomically(data_dir / name, path.read_bytes())
    except OSError as exc:
        raise ConfigError(
            f"{exc.filename or data_dir}: cannot install schemas ({exc.strerror})"
        ) from exc
    return [pinned for _, (_, pinned) in sorted(chosen.items())]


# ---- load ----------------------------------------------------------------------------------------


def _map_uri(url: str) -> str:
    """Answer every xmldsig import with xmlschema's bundled copy (no DTD, no network)."""
    if url.rsplit("/", 1)[-1] == "xmldsig-core-schema.xsd":
        return _DSIG.as_uri()
    return url


class SchemaSet:
    """The schemas installed in one directory; compiled lazily, once, and kept."""

    def __init__(self, directory: Path, files: Mapping[str, SchemaFile]) -> None:
        self.directory = directory
        self.files: tuple[SchemaFile, ...] = tuple(files.values())
        self._compiled: dict[str, Any] = {}

    @property
    def versions(self) -> tuple[str, ...]:
        """``role version`` of every installed file, e.g. ``invoice-ordinaria 1.2.3``."""
        return tuple(f"{f.role} {f.version}" for f in self.files)

    def _best(self, role: str, fmt: str | None = None) -> SchemaFile | None:
        fitting = [f for f in self.files if f.role == role and (fmt is None or fmt in f.formats)]
        return max(fitting, key=lambda f: _version_key(f.version), default=None)

    def _compile(self, schema_file: SchemaFile) -> Any:
        if schema_file.filename not in self._compiled:
            path = self.directory / schema_file.filename
            try:
                self._compiled[schema_file.filename] = xmlschema.XMLSchema10(
                    str(path), allow="local", defuse="always", uri_mapper=_map_uri
                )
            except (xmlschema.XMLSchemaException, OSError, SyntaxError) as exc:
                raise ConfigError(
                    f"{path}: cannot load the schema ({exc}); {_DOWNLOAD_HINT}"
                ) from exc
        return self._compiled[schema_file.filename]

    def for_invoice(self, versione: str) -> xmlschema.XMLSchema | None:
        """The newest installed invoice schema accepting ``versione`` (FPA12, FPR12, FSM10)."""
        role = _INVOICE_ROLES.get(versione, "invoice-semplificata")
        best = self._best(role, versione)
        return None if best is None else self._compile(best)

    def for_notification(self, flow: str) -> xmlschema.XMLSchema | None:
        """MessaggiTypes (``PA``) or MessaggiFatturaTypes (``B2B``), when installed."""
        role = _NOTIFICATION_ROLES.get(flow)
        best = self._best(role) if role else None
        return None if best is None else self._compile(best)

    def stylesheet_for(self, fmt: str) -> Path | None:
        """The installed rendering stylesheet (XSL) for a format, newest official first."""
        best = self._best("stylesheet", fmt)
        return None if best is None else self.directory / best.filename


def load(schema_dir: Path) -> SchemaSet:
    """The schemas installed in ``schema_dir``; ConfigError when missing, altered or unreadable."""
    if not schema_dir.is_dir():
        raise _not_installed("schemas", schema_dir)
    files: dict[str, SchemaFile] = {}
    try:
        for name, digests in sorted(_PINNED_NAMES.items()):
            path = schema_dir / name
            if not path.is_file():
                continue
            digest = _sha256(path)
            if digest not in digests:
                raise ConfigError(
                    f"{path}: checksum mismatch, the file was altered; {_DOWNLOAD_HINT}"
                )
            files[name] = PINNED[digest]
    except OSError as exc:
        raise ConfigError(f"{schema_dir}: cannot read the schemas ({exc.strerror})") from exc
    if not any(f.role.startswith("invoice-") for f in files.values()):
        raise _not_installed("invoice schema", schema_dir)
    return SchemaSet(schema_dir, files)
