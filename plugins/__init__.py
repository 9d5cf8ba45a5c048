"""Built-in plugins of optbench, registered through the ``optbench.plugins`` entry points like any other."""
