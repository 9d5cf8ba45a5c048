"""optbench core: plugin registry, solver protocol, training loop and results store.

Importing this package is cheap (no torch, no Lightning); the heavy modules are imported by the
runner only when a run starts.
"""

__version__ = "0.1.0"
ENTRY_POINT_GROUP = "optbench.plugins"
