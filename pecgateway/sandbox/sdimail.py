"""SDI's inner messages: the mail SDI writes from its sdiNN address before its provider wraps it.

Owns their subjects, short Italian texts and MIME shape, modelled on the real ones (the files as
``application/octet-stream`` attachments first, then a text/plain part). Decides nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from zoneinfo import ZoneInfo

__all__ = ["SDI_DOMAIN", "Part", "answer", "invio_file"]

SDI_DOMAIN = "pec.fatturapa.it"
Part = tuple[str, bytes, str]  # file name, bytes, Content-Transfer-Encoding

_ROME = ZoneInfo("Europe/Rome")
_SUBJECTS = {
    "RC": "Ricevuta di consegna",
    "NS": "Notifica di scarto",
    "MC": "Notifica di mancata consegna",
    "NE": "Notifica di esito",
    "DT": "Notifica di decorrenza termini",
    "AT": "Attestazione di avvenuta trasmissione della fattura con impossibilità di recapito",
}
_TEXTS = {
    "RC": "e' stato consegnato al destinatario. In allegato la ricevuta di consegna.",
    "NS": "e' stato scartato. In allegato la notifica di scarto con i motivi.",
    "MC": "non e' stato recapitato al destinatario: sono in corso ulteriori tentativi. "
    "Se ha gia' ricevuto la ricevuta di consegna, ignori questa notifica.",
    "NE": "ha ricevuto l'esito del committente. In allegato la notifica di esito.",
    "DT": "non ha ricevuto esito dal committente nei termini. In allegato la notifica.",
    "AT": "e' stato trasmesso ma non recapitato. In allegato l'attestazione con la fattura.",
}
_SANDBOX = "(Sistema di Interscambio simulato dal sandbox di pecgateway: nessun documento reale.)"


def answer(
    kind: str,
    *,
    sender: str,
    to: str,
    nome_file: str,
    identificativo_sdi: str,
    when: datetime,
    parts: list[Part],
) -> EmailMessage:
    """SDI's message carrying a notification of ``kind`` (RC NS MC NE DT AT) about one file."""
    text = (
        f"Il file {nome_file}, ricevuto con identificativo {identificativo_sdi}, {_TEXTS[kind]}\n\n"
        f"Per i prossimi invii utilizzare l'indirizzo {sender} fino a nuova comunicazione.\n\n"
        f"{_SANDBOX}\n"
    )
    subject = f"{_SUBJECTS[kind]} {identificativo_sdi}"
    return _compose(sender, to, subject, when, parts, text)


def invio_file(
    *,
    sender: str,
    to: str,
    file_name: str,
    identificativo_sdi: str,
    when: datetime,
    parts: list[Part],
) -> EmailMessage:
    """SDI's ``Invio File <IdSdI>``: a supplier's invoice and its metadata file."""
    text = (
        f"Invio file {file_name}, con identificativo {identificativo_sdi}. In allegato il file "
        f"contenente la fattura ed il file contenente i metadati.\n\n{_SANDBOX}\n"
    )
    return _compose(sender, to, f"Invio File {identificativo_sdi}", when, parts, text)


def _compose(
    sender: str, to: str, subject: str, when: datetime, parts: list[Part], text: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    message["Date"] = format_datetime(aware.astimezone(_ROME))
    message["Message-ID"] = make_msgid(domain=SDI_DOMAIN)
    message["X-TipoRicevuta"] = "breve"
    message["MIME-Version"] = "1.0"
    message.make_mixed()
    for name, data, cte in parts:
        part = EmailMessage()
        part.set_content(
            data, "application", "octet-stream", filename=name, cte=cte, params={"name": name}
        )
        del part["MIME-Version"]
        message.attach(part)
    body = EmailMessage()
    body.set_content(text, charset="utf-8")
    del body["MIME-Version"]
    message.attach(body)
    return message
