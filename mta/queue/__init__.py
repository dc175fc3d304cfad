"""Scheduling: per-domain disk backlog, per-site ready queues, outcomes."""
