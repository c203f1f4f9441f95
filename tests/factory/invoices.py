"""Test-only variations of the synthetic invoices of ``pecgateway.sample``: the field quirks, built here."""

from __future__ import annotations

import csv
from pathlib import Path

from pecgateway import sample

__all__ = [
    "big_invoice",
    "manifest_facts",
    "manifest_rows",
    "replace_once",
    "with_declaration",
    "without_declaration",
]

DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>\n"


def replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    """Replace the first ``old``; fails loudly when the sample does not contain it."""
    assert old in data, f"{old!r} not in the sample"
    return data.replace(old, new, 1)


def without_declaration(data: bytes) -> bytes:
    """Q8: the same document without its ``<?xml ...?>`` line."""
    return replace_once(data, DECLARATION, b"")


def with_declaration(data: bytes, encoding: str) -> bytes:
    """The document declaring another encoding (the bytes are not re-encoded)."""
    return replace_once(
        data, DECLARATION, f'<?xml version="1.0" encoding="{encoding}"?>\n'.encode()
    )


def big_invoice(attachment_bytes: int) -> bytes:
    """BL-22: an FPR12 invoice carrying a (fake) PDF of ``attachment_bytes`` in Allegati."""
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * (attachment_bytes // 256)
    body = sample.Body("1", "2024-01-15", allegati=(sample.Allegato("fattura.pdf", pdf),))
    return sample.fpr12(lot=[body])


def manifest_rows(corpus: Path, kind_prefix: str) -> list[dict[str, str]]:
    """The MANIFEST.tsv rows whose kind starts with ``kind_prefix``; [] when the corpus is absent."""
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row for row in rows if row["kind"].startswith(kind_prefix)]


def manifest_facts(expected: str) -> dict[str, str]:
    """``key=value; key=value ...`` of a MANIFEST expected_facts cell (the IdTrasmittente triple split)."""
    facts: dict[str, str] = {}
    for item in expected.split("; "):
        for part in item.split(" ") if item.startswith("IdTrasmittente=") else [item]:
            key, sep, value = part.partition("=")
            if sep:
                facts[key.strip()] = value
    return facts
