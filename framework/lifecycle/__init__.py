"""How a run begins and ends, and how its steps are grouped: its directory, stop signals, divergence, fused
steps, statuses and exit codes, sweeps."""
