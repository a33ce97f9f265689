"""Fault-injection suite (issue 3, section 5): processes killed, stopped,
signalled, crashing handlers, contention, and storage faults."""
