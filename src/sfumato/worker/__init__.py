"""Claiming queued tasks, running them through providers under a lease, and recovery."""
