"""Outbound SMTP: MX routing (`dnsroute`, its pure rules in `dnsroute_core`), connections bound to
source addresses and their transactions (`client`), what a reply means (`replies`)."""
