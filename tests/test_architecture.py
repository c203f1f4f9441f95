"""The pure core imports nothing that does I/O, concurrency, logging or storage."""

import ast
from pathlib import Path

import pytest

CORE = [
    "safexml",
    "mail",
    "filename",
    "p7m",
    "ber",
    "invoice",
    "validate",
    "validate_xml",
    "xsderror",
    "sdi",
    "pec",
    "classify",
    "report",
    "compose",
    "lifecycle",
]
FORBIDDEN = {
    "asyncio",
    "aiosmtplib",
    "aioimaplib",
    "aiosmtpd",
    "sqlite3",
    "structlog",
    "socket",
    "subprocess",
    "watchfiles",
    "pecgateway.store",
    "pecgateway.service",
    "time",
    "random",
    "os",
    "shutil",
    "tempfile",
    "pathlib",
}
PACKAGE = Path(__file__).resolve().parent.parent / "pecgateway"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    imported = _imports(PACKAGE / f"{module}.py")
    bad = {name for name in imported if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN}
    assert not bad, f"pecgateway/{module}.py must stay pure but imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_every_module_opens_with_a_charter_docstring(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc is not None, f"{path.name} needs a docstring saying what it owns"
    assert len(doc) > 20, f"{path.name}: the docstring must say what the module owns"
