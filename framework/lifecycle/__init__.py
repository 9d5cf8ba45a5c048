"""How a run begins and ends: its directory, stop signals, divergence, statuses and exit codes, sweeps."""
