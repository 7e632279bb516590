"""Programs the benchmarks run as child processes (never imported by fworker)."""
