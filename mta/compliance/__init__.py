"""What mailbox providers require of a sender, and the checks that it is in place: DKIM signing
(`dkim`), one-click unsubscribe tokens and headers (`unsubscribe`), the SPF evaluator (`spf`) and
`mta check-dns` (`checkdns`: SPF, DKIM, DMARC, reverse DNS, bounce MX, alignment)."""
