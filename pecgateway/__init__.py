"""pecgateway: FatturaPA invoices to SDI over PEC, and everything that comes back, filed for people."""

__version__ = "0.1.0"
