"""Outbound SMTP: connections bound to source addresses, transactions, reply handling."""
