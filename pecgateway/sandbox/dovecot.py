"""A private Dovecot (the sandbox's IMAP server) run as a child process from one directory.

Owns the self-contained configuration (never /etc/dovecot), the passwd-file of users, the start, the
clean stop (kick, SIGTERM, SIGKILL on timeout; no process left behind) and mail injection with
`doveadm save` or IMAP APPEND. Synchronous on purpose: async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import ctypes
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pecgateway.errors import ConfigError, TransientError
from pecgateway.sandbox.ca import SandboxCA

__all__ = [
    "Dovecot",
    "DovecotMissing",
    "MailAccount",
    "blocking_ancestor",
    "free_port",
    "port_free",
]

INSTALL_HINT = (
    "Dovecot is needed by the sandbox and was not found on PATH: install it with "
    "`apt-get install dovecot-imapd` (Debian/Ubuntu; `make demo` and .ci/run do it for you)"
)

_CONF = """\
# Self-contained Dovecot configuration written by pecgateway's sandbox; do not edit.
instance_name = pecgateway-sandbox-{port_imap}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
hostname = sandbox.localhost
{identity}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
first_valid_uid = 1
mail_location = maildir:~/Maildir

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = subscribe
  }}
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port_imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port_imaps}
    ssl = yes
  }}
  process_min_avail = 0
}}
# every client is 127.0.0.1: without this one failed login slows all later ones to ~4.5 s
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""

_MAIL_UID = 65534  # nobody/nogroup: Dovecot refuses uid 0 for mail processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:``port`` now (False for 0).

    Binds as servers do (SO_REUSEADDR), so the closed connections of an earlier run do not count."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class DovecotMissing(ConfigError):
    """The `dovecot` binary is not installed; the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


@dataclass(frozen=True, slots=True)
class MailAccount:
    """What a client needs to reach one mailbox of the private Dovecot."""

    user: str
    password: str
    host: str
    port: int  # implicit TLS
    starttls_port: int  # plain, upgraded with STARTTLS
    ca_file: Path


class Dovecot:
    """One private Dovecot instance; ``users`` are written before start (reloads lag ~1 s).

    Set ``port``/``starttls_port`` before ``start`` to listen there (0: any free port). The mail
    lives in ``directory``/mail and is kept across starts."""

    def __init__(
        self, directory: Path, users: Mapping[str, str], *, ca: SandboxCA | None = None
    ) -> None:
        self.directory = directory.resolve()
        self.users = dict(users)
        self.ca = ca
        self.port = 0
        self.starttls_port = 0
        self.host = "127.0.0.1"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def ca_file(self) -> Path:
        return self._ca().ca_file

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def account(self, user: str) -> MailAccount:
        return MailAccount(
            user, self.users[user], self.host, self.port, self.starttls_port, self.ca_file
        )

    def start(self, timeout_s: float = 15.0) -> None:
        """Writes the configuration and starts `dovecot -F`; returns once both ports accept."""
        binary = shutil.which("dovecot")
        if binary is None:
            raise DovecotMissing()
        self._prepare()
        with (self.directory / "dovecot.stdout").open("wb") as out:
            self._process = subprocess.Popen(
                [binary, "-c", str(self.conf), "-F"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # only an async-signal-safe prctl call runs in the child (no Python locks taken)
                preexec_fn=_die_with_parent(),  # noqa: PLW1509
            )
        try:
            self._wait_listening(timeout_s)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """Kicks every client, stops the master and makes sure none of its processes survive."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            children = _children(process.pid)
            self._doveadm("kick", "*", check=False)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            _reap(children, timeout_s)

    def pids(self) -> list[int]:
        """The master's pid and its children's (empty when stopped)."""
        if not self.running or self._process is None:
            return []
        return [self._process.pid, *_children(self._process.pid)]

    def append(self, user: str, raw: bytes, mailbox: str = "INBOX") -> None:
        """Stores ``raw`` unchanged in ``user``'s ``mailbox`` with `doveadm save`."""
        self._doveadm("save", "-u", user, "-m", mailbox, data=raw)

    def imap_append(self, user: str, raw: bytes, mailbox: str = "INBOX") -> None:
        """Stores ``raw`` in ``user``'s ``mailbox`` by IMAP APPEND over implicit TLS."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=30) as imap:
                imap.login(user, self.users[user])
                status, detail = imap.append(mailbox, "", None, raw)
                if status != "OK":
                    raise TransientError(f"IMAP APPEND refused: {_text(detail)}", subject=user)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransientError(f"IMAP APPEND failed: {exc}", subject=user) from exc

    def count(self, user: str, mailbox: str = "INBOX") -> int:
        """How many messages ``mailbox`` holds (doveadm, for assertions)."""
        out = self._doveadm("mailbox", "status", "-u", user, "messages", mailbox)
        return int(out.split("=", 1)[1])

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.directory / "dovecot.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no dovecot.log)"
        return "\n".join(text.splitlines()[-lines:])

    # ---- internals ----------------------------------------------------------------------------

    def _ca(self) -> SandboxCA:
        if self.ca is None:
            self.ca = SandboxCA.load_or_create(self.directory / "ca")
        return self.ca

    def _prepare(self) -> None:
        blocked = blocking_ancestor(self.directory)
        if blocked is not None:
            raise ConfigError(
                f"Dovecot's helper processes (users dovecot and nobody) cannot enter {blocked} "
                f"(mode {blocked.stat().st_mode & 0o777:o}): choose a directory under a world-"
                "traversable path such as /tmp or /srv",
                key=str(self.directory),
            )
        for sub in ("", "run", "state", "mail"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o755)  # the auth process (user dovecot) must read `users`
        uid, gid, identity = _identity()
        if os.geteuid() == 0:
            os.chown(self.directory / "mail", uid, gid)
        lines = "".join(
            f"{user}:{{PLAIN}}{password}:::::\n" for user, password in self.users.items()
        )
        (self.directory / "users").write_text(lines)
        self.port = self.port or free_port()
        self.starttls_port = self.starttls_port or free_port()
        ca = self._ca()
        self.conf.write_text(
            _CONF.format(
                dir=self.directory,
                cert=ca.server.cert_path,
                key=ca.server.key_path,
                uid=uid,
                gid=gid,
                identity=identity,
                port_imap=self.starttls_port,
                port_imaps=self.port,
            )
        )

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for port in (self.port, self.starttls_port):
            while not _accepts(self.host, port):
                if self._process is None or self._process.poll() is not None:
                    raise ConfigError(f"dovecot exited at start-up:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise ConfigError(f"dovecot did not listen on {port}:\n{self.log_tail()}")
                time.sleep(0.01)

    def _doveadm(self, *args: str, data: bytes | None = None, check: bool = True) -> str:
        binary = shutil.which("doveadm")
        if binary is None:
            raise DovecotMissing()
        result = subprocess.run(
            [binary, "-c", str(self.conf), *args],
            input=data,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip()
            raise TransientError(f"doveadm {args[0]} failed: {reason}", subject=str(self.conf))
        return result.stdout.decode(errors="replace")


def blocking_ancestor(directory: Path) -> Path | None:
    """The first existing ancestor of ``directory`` that other users cannot traverse, if any."""
    for ancestor in reversed(directory.resolve().parents):
        if ancestor.exists() and not ancestor.stat().st_mode & 0o001:
            return ancestor
    return None


def _identity() -> tuple[int, int, str]:
    """Mail uid/gid and extra settings: nobody as root, else the current user everywhere."""
    if os.geteuid() == 0:
        return _MAIL_UID, _MAIL_UID, ""
    name = pwd.getpwuid(os.geteuid()).pw_name
    settings = (
        f"default_internal_user = {name}\ndefault_internal_group = {name}\n"
        f"default_login_user = {name}\n"
    )
    return os.geteuid(), os.getegid(), settings


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM Dovecot if we die first (a killed test run)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return hook


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.2).close()
    except OSError:
        return False
    return True


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _parent(int(entry.name)) == pid:
            found.append(int(entry.name))
    return found


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped by init."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap(pids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _text(detail: object) -> str:
    """An IMAP server's answer as a person reads it (imaplib hands a list of bytes)."""
    items = detail if isinstance(detail, list | tuple) else [detail]
    return " ".join(
        item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
        for item in items
        if item is not None
    )
