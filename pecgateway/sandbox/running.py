"""A running sandbox: the PEC provider's listeners, the SDI simulator and the control channel.

Owns their start and stop in one event loop around an already started Dovecot, and what the
control commands do: ``deliver`` (a supplier invoice, as SDI delivers it) and ``inject`` (a raw
message, unchanged; SDI follows one that teaches the gateway another sdiNN, see ``follow``). Every
provider or SDI message reaches the user's mailbox by IMAP APPEND; what the provider has not
delivered yet waits in DIR/provider-queue across a restart.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pecgateway.sandbox import follow
from pecgateway.sandbox.ca import SandboxCA
from pecgateway.sandbox.control import ControlError, ControlServer, Request
from pecgateway.sandbox.dovecot import Dovecot
from pecgateway.sandbox.layout import Endpoints, Layout
from pecgateway.sandbox.notification import XadesSigner
from pecgateway.sandbox.provider import PecProvider, ProviderConfig
from pecgateway.sandbox.simulator import SdiSimulator, SimulatorConfig
from pecgateway.sandbox.spool import Spool
from pecgateway.sandbox.submission import SubmissionServer, server_tls_context

__all__ = ["RunningSandbox"]

_DATA_SIZE_LIMIT = 40 * 1024 * 1024  # over the provider's 30 MB: bigger ones get a notice
_EMPTY = "the message is empty (or only blank lines): give a raw mail message, e.g. a .eml file"


class RunningSandbox:
    """Everything but Dovecot, in the current loop; ``stop`` leaves no task or listener behind."""

    def __init__(
        self,
        layout: Layout,
        *,
        ca: SandboxCA,
        dovecot: Dovecot,
        schemas: Any,
        log: Any,
        simulator_config: SimulatorConfig,
        consegna_delay_s: float,
        control_token: str,
    ) -> None:
        self._layout = layout
        self._dovecot = dovecot
        self._log = log
        self.simulator = SdiSimulator(
            signer=XadesSigner(ca.sdi.key_pem, ca.sdi.cert_pem),
            schemas=schemas,
            config=simulator_config,
            log=log.bind(component="sdi"),
            state_path=layout.sdi_state,
        )
        self.provider = PecProvider(
            user=layout.user,
            ca=ca,
            deposit=self._deposit,
            simulator=self.simulator,
            log=log.bind(component="provider"),
            config=ProviderConfig(consegna_delay_s=consegna_delay_s),
            queue=Spool(layout.provider_queue),
        )
        tls = server_tls_context(ca.server.cert_path, ca.server.key_path)
        self._smtp = SubmissionServer(
            {layout.user: layout.password()},
            tls,
            self.provider.submit,
            hostname=f"smtps.{self.provider.config.domain}",
            data_size_limit=_DATA_SIZE_LIMIT,
        )
        self._control = ControlServer(control_token, self._command)
        self._token = control_token

    async def _deposit(self, raw: bytes) -> None:
        await asyncio.to_thread(self._dovecot.imap_append, self._layout.user, raw)

    async def start(self, smtp_port: int = 0, smtp_starttls_port: int = 0) -> Endpoints:
        """Starts listening (SMTP on the given ports where free, else any) and says where."""
        await self._smtp.start(smtp_port, smtp_starttls_port)
        await self._control.start()
        await self.provider.resume()  # what an earlier run accepted and had not delivered yet
        return Endpoints(
            imap_port=self._dovecot.port,
            imap_starttls_port=self._dovecot.starttls_port,
            smtp_port=self._smtp.port,
            smtp_starttls_port=self._smtp.starttls_port,
            control_port=self._control.port,
            control_token=self._token,
        )

    async def stop(self) -> None:
        await self._control.stop()
        await self._smtp.stop()
        await self.provider.stop()

    async def _command(self, request: Request) -> str:
        if request.command == "deliver":
            return await self._deliver(request)
        if request.command == "inject":
            return await self._inject(request)
        raise ControlError(f"unknown control command {request.command!r}")

    async def _inject(self, request: Request) -> str:
        if not request.data.strip():
            raise ControlError(f"{_EMPTY}; nothing was appended")
        moved = await self._follow_sdi(request)
        await self._deposit(request.data)
        self._log.info("message_injected", file=request.file_name, size=len(request.data))
        detail = f"appended unchanged to the INBOX of {self._layout.user}"
        return detail if moved is None else f"{detail}; SDI now answers files sent to {moved}"

    async def _follow_sdi(self, request: Request) -> str | None:
        """The sdiNN an injected SDI message teaches the gateway becomes the one SDI answers on."""
        found = await self.provider.sdi_call(
            follow.new_sdi_address, raw=request.data, received=self.simulator.received
        )
        if found is None:
            return None
        address, what = found
        moved = await self.provider.sdi_call(
            self.simulator.move_address,
            user=self._layout.user,
            address=address,
            now=datetime.now().astimezone(),
            reason=f"the injected {request.file_name} is {what}, from {address}: the gateway "
            "learns that address from it, and real SDI expects files on the address it writes from",
        )
        return address if moved else None

    async def _deliver(self, request: Request) -> str:
        if not request.data:
            raise ControlError("the invoice file is empty")
        outgoing = await self.provider.sdi_call(
            self.simulator.deliver_invoice,
            recipient=self._layout.user,
            file_name=request.file_name,
            data=request.data,
            now=datetime.now().astimezone(),
        )
        await self.provider.deliver(outgoing)
        subject = str(outgoing.message.get("Subject", ""))
        return f"delivered as '{subject}' from {outgoing.sender} to {self._layout.user}"
