"""Builders of test inputs made at test time (invoices, signed p7m, PEC messages, notifications)."""
