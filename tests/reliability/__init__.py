"""The reliability suite: real processes, real faults, and a report of what was tried."""
