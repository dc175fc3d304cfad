"""Open and click tracking: signed tokens, HTML rewriting, machine-activity rules."""
