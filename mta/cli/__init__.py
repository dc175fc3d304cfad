"""The `mta` command line: `main` (serve, check-config, user, dkim; dispatches the rest), `queue`
(mailq/postqueue/postsuper habits), `suppression`, `checkdns`. Commands read the config and the
spool, or talk to a running daemon over its control socket; nothing else imports them."""
