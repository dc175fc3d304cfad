"""Inbound feedback: the listener's policy for what it accepts (`handler`), the VERP return paths
that make bounces attributable (`verp`), and what reports become: suppression entries, events and
feedback for the policy daemon (`bounces`)."""
