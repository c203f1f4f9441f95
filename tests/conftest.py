"""Shared fixtures: the schema directory, and the real mail servers (added by the sandbox)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
