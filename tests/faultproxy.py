"""The fault-injecting Manager under its old name: tests written against the
first FaultProxy (answer, rewrite, up, down, log) keep working."""
from fworker.devmanager.faults import FaultManager as FaultProxy  # noqa: F401
