"""Benchmarks of pecgateway's hot paths, each reported as a ratio against a baseline run alongside.

Speed: the best of several timed repetitions of our function divided by the best of the same number
of repetitions of the least work that any implementation must do (e.g. asn1crypto's bare CMS load for
p7m unwrapping, lxml's parse for invoice reading). Memory: peak traced allocation divided by the
input size. Ratios, not seconds, so results compare across machines. Never run by the test suite.
Usage: python bench/run.py [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import json
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from lxml import etree

from pecgateway import classify, compose, invoice, p7m, sample

REPEATS = 7


@dataclass(frozen=True)
class Result:
    name: str
    ours_s: float
    baseline_s: float
    peak_over_input: float | None

    @property
    def ratio(self) -> float:
        return self.ours_s / self.baseline_s if self.baseline_s else float("inf")


def _best(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _big_invoice(megabytes: int) -> bytes:
    attachment = sample.Allegato(nome="allegato.pdf", data=b"%PDF-1.4 " + b"x" * (megabytes << 20))
    body = sample.Body(numero="1", data="2026-12-01", allegati=(attachment,))
    return sample.fpr12(lot=[body])


def _signed(data: bytes) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


def bench_unwrap(envelope: bytes) -> Result:
    def baseline() -> object:
        info = cms.ContentInfo.load(envelope)
        return info["content"]["encap_content_info"]["content"].native

    return Result(
        "p7m.unwrap (DER, 5 MB)",
        _best(lambda: p7m.unwrap(envelope)),
        _best(baseline),
        _peak(lambda: p7m.unwrap(envelope)) / len(envelope),
    )


def bench_invoice_parse(xml: bytes) -> Result:
    return Result(
        "invoice.parse (5 MB)",
        _best(lambda: invoice.parse(xml)),
        _best(lambda: etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False))),
        _peak(lambda: invoice.parse(xml)) / len(xml),
    )


def bench_classify_mail(raw: bytes) -> Result:
    def baseline() -> object:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        return [part.get_content() for part in message.walk() if not part.is_multipart()]

    return Result(
        "classify (mail with 5 MB invoice)",
        _best(lambda: classify.classify(raw), repeats=3),
        _best(baseline, repeats=3),
        _peak(lambda: classify.classify(raw)) / len(raw),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    xml = _big_invoice(5)
    envelope = _signed(xml)
    mail = compose.compose(
        file_name="IT01234567890_00001.xml.p7m",
        data=envelope,
        sender="a@pec.example.it",
        recipient="b@pec.example.it",
        message_id="<bench@pec.example.it>",
        date=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
    ).as_bytes()
    results = [
        bench_unwrap(envelope),
        bench_invoice_parse(xml),
        bench_classify_mail(mail),
    ]
    if args.json:
        print(json.dumps([{**r.__dict__, "ratio": r.ratio} for r in results], indent=2))
        return 0
    print(f"{'benchmark':40} {'ratio':>8} {'peak/input':>11}")
    for r in results:
        peak = f"{r.peak_over_input:.2f}" if r.peak_over_input is not None else "-"
        print(f"{r.name:40} {r.ratio:8.2f} {peak:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
