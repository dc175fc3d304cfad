"""Scheduling: per-domain disk backlog, per-site ready queues (`scheduler`, `site`), which site a
job goes to (`routing`: its relay, or its domain's MX hosts), leases in batches (`grants`;
`limits`: the static limiter), what replies mean and what they become (`outcomes`, `recorder`,
`dsn`), bodies in memory (`bodycache`) and the suppression check before each transaction
(`suppressed`)."""
