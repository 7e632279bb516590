"""The reliability suite: the real worker under injected faults (part of the normal run)."""
