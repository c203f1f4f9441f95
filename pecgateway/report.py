"""The ``inspect`` report: a classified tree as the JSON of contracts.md section 1, or as plain text.

Owns the exact JSON shape (names never change; fields may only be added) and the short summary an
office clerk reads. Pure: a Node in, a dict or a string out; decides nothing about the content.
"""

from __future__ import annotations

from pecgateway.classify import Kind, Node
from pecgateway.invoice import Invoice, Party
from pecgateway.pec import PecMessage
from pecgateway.sdi import Notification

__all__ = ["render_text", "to_json"]

_FAILED = (Kind.MALFORMED, Kind.UNKNOWN)


def to_json(node: Node, path: str | None = None) -> dict[str, object]:
    """The contracts.md section 1 object; ``path`` defaults to the node's file name."""
    return {"path": path if path is not None else node.filename, **_fields(node)}


def _fields(node: Node) -> dict[str, object]:
    out: dict[str, object] = {"kind": node.kind.value}
    if node.kind in _FAILED:
        out["error"] = node.error or "not understood"
    out["warnings"] = list(node.warnings)
    out["sha256"] = node.sha256
    if node.kind is Kind.INVOICE and node.invoice is not None:
        out["invoice"] = _invoice(node, node.invoice)
    elif node.kind is Kind.NOTIFICATION and node.notification is not None:
        out["notification"] = _notification(node, node.notification)
    elif node.kind is Kind.PEC and node.pec is not None:
        out["pec"] = _pec(node.pec)
    out["contents"] = [{"filename": child.filename, **_fields(child)} for child in node.contents]
    return out


def _party(party: Party) -> dict[str, object]:
    return {"vat": party.vat, "codice_fiscale": party.codice_fiscale, "name": party.name}


def _invoice(node: Node, parsed: Invoice) -> dict[str, object]:
    return {
        "format": parsed.format,
        "signed": node.signed,
        "signers": [{"subject": s.subject, "signing_time": s.signing_time} for s in node.signers],
        "transmitter": parsed.transmitter,
        "progressivo_invio": parsed.progressivo_invio,
        "codice_destinatario": parsed.codice_destinatario,
        "pec_destinatario": parsed.pec_destinatario,
        "seller": _party(parsed.seller),
        "buyer": _party(parsed.buyer),
        "documents": [
            {
                "tipo_documento": doc.tipo_documento,
                "numero": doc.numero,
                "data": doc.data,
                "importo_totale": doc.importo_totale,
                "divisa": doc.divisa,
            }
            for doc in parsed.documents
        ],
        "flow": parsed.flow,
        "versione": parsed.versione,
    }


def _notification(node: Node, parsed: Notification) -> dict[str, object]:
    return {
        "type": parsed.type.value,
        "flow": parsed.flow.value,
        "root": parsed.root,
        "identificativo_sdi": parsed.identificativo_sdi,
        "nome_file": parsed.nome_file,
        "message_id": parsed.message_id,
        "pec_message_id": parsed.pec_message_id,
        "data_ora_ricezione": parsed.data_ora_ricezione,
        "errors": [
            {"codice": e.codice, "descrizione": e.descrizione, "suggerimento": e.suggerimento}
            for e in parsed.errors
        ],
        "esito": parsed.esito,
        "signed": node.signed or parsed.signed,
        "hash": parsed.hash,
        "codice_destinatario": parsed.codice_destinatario,
        "data_messa_a_disposizione": parsed.data_messa_a_disposizione,
        "descrizione": parsed.descrizione,
        "note": parsed.note,
    }


def _pec(message: PecMessage) -> dict[str, object]:
    return {
        "type": message.type.value if message.type is not None else None,
        "identificativo": message.identificativo,
        "riferimento_message_id": message.riferimento_message_id,
        "mittente": message.mittente,
        "destinatari": list(message.destinatari),
        "oggetto": message.oggetto,
        "gestore": message.gestore,
        "errore": message.errore,
        "errore_esteso": message.errore_esteso,
        "sdi_address": message.sdi_address,
        "message_id": message.message_id,
    }


# ---- text -------------------------------------------------------------------------------------------

_NOTIFICATION_NAMES = {
    "RC": "delivery receipt (ricevuta di consegna): SDI delivered the invoice",
    "NS": "rejection (notifica di scarto): SDI refused the invoice",
    "MC": "failed delivery (mancata consegna): issued, but not delivered to the recipient",
    "NE": "outcome (notifica di esito) from the public administration",
    "DT": "deadline passed (decorrenza termini): no answer from the public administration",
    "AT": "attestation (attestazione di avvenuta trasmissione) with failed delivery",
    "EC": "recipient's outcome (esito committente)",
    "SE": "rejection of the recipient's outcome (scarto esito committente)",
    "MT": "metadata file (file metadati) that comes with a received invoice",
}


def render_text(node: Node, path: str | None = None) -> str:
    """A few lines saying what the file is, its key facts, the repairs, then what it contains."""
    return "\n".join(_lines(node, path if path is not None else (node.filename or "input"), ""))


def _lines(node: Node, name: str, indent: str) -> list[str]:
    lines = [f"{indent}{name}: {_headline(node)}"]
    lines += [f"{indent}  {fact}" for fact in _facts(node)]
    lines += [f"{indent}  note: {warning}" for warning in node.warnings]
    if node.contents:
        lines.append(f"{indent}  contains {len(node.contents)} file(s):")
        for child in node.contents:
            lines += _lines(child, child.filename or "(no name)", indent + "    ")
    return lines


def _headline(node: Node) -> str:
    if node.kind is Kind.INVOICE and node.invoice is not None:
        signed = f", signed by {_signers(node)}" if node.signed else ", not signed"
        return f"electronic invoice {node.invoice.format}{signed}"
    if node.kind is Kind.NOTIFICATION and node.notification is not None:
        code = node.notification.type.value
        return f"SDI notification {code}, {_NOTIFICATION_NAMES.get(code, code)}"
    if node.kind is Kind.PEC and node.pec is not None and node.pec.type is not None:
        return f"PEC message ({node.pec.type.value})"
    if node.kind is Kind.EMAIL:
        return "ordinary e-mail (not PEC)"
    if node.kind is Kind.ARCHIVE:
        return "zip archive"
    label = "damaged or unreadable" if node.kind is Kind.MALFORMED else "not recognised"
    return f"{label}: {node.error}"


def _signers(node: Node) -> str:
    return "; ".join(s.subject for s in node.signers) or "an unnamed signer"


def _facts(node: Node) -> list[str]:
    if node.kind is Kind.INVOICE and node.invoice is not None:
        return _invoice_facts(node.invoice)
    if node.kind is Kind.NOTIFICATION and node.notification is not None:
        return _notification_facts(node.notification)
    if node.kind in (Kind.PEC, Kind.EMAIL) and node.pec is not None:
        return _pec_facts(node.pec)
    return []


def _who(party: Party) -> str:
    ids = ", ".join(x for x in (party.vat, party.codice_fiscale) if x)
    return f"{party.name or '(no name)'}" + (f" ({ids})" if ids else "")


def _invoice_facts(parsed: Invoice) -> list[str]:
    recipient = parsed.pec_destinatario or parsed.codice_destinatario or "?"
    facts = [
        f"sent by {parsed.transmitter or '?'} (progressivo {parsed.progressivo_invio or '?'})"
        + f" to {recipient}",
        f"seller: {_who(parsed.seller)}",
        f"buyer: {_who(parsed.buyer)}",
    ]
    for doc in parsed.documents:
        total = (
            f", total {doc.importo_totale} {doc.divisa or ''}".rstrip()
            if doc.importo_totale
            else ""
        )
        facts.append(
            f"document {doc.tipo_documento or '?'} no. {doc.numero or '?'}"
            f" of {doc.data or '?'}{total}"
        )
    return facts


def _notification_facts(parsed: Notification) -> list[str]:
    facts = [
        f"IdentificativoSdI {parsed.identificativo_sdi or '?'}, about {parsed.nome_file or '?'}"
    ]
    if parsed.esito:
        facts.append(f"esito {parsed.esito}")
    facts += [f"error {e.codice}: {e.descrizione or ''}".rstrip(": ") for e in parsed.errors]
    return facts


def _pec_facts(message: PecMessage) -> list[str]:
    facts = [f"subject: {message.oggetto or '(none)'}"]
    facts.append(f"from {message.mittente or '?'} to {', '.join(message.destinatari) or '?'}")
    if message.sdi_address:
        facts.append(f"from SDI ({message.sdi_address})")
    if message.riferimento_message_id:
        facts.append(f"refers to message {message.riferimento_message_id}")
    if message.errore and message.errore != "nessuno":
        facts.append(f"error: {message.errore} {message.errore_esteso or ''}".rstrip())
    return facts
