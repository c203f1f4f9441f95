"""The sandbox: a local PEC provider and SDI simulator on real mail servers (Dovecot, aiosmtpd)."""
