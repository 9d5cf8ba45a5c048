"""Tools for plugin authors: the conformance suite (``check_solver``, ``check_problem``, ``check_backend``,
also exported by :mod:`framework.api`), ``optbench list --check`` and ``optbench new plugin``."""
