"""Per-recipient engagement: decaying scores, their store, and the order capped mail goes out in."""
