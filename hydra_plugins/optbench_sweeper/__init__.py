"""optbench's Hydra sweeper plugins: ``hydra/sweeper=optuna`` (Optuna >= 4, ask/tell, journal storage) and
the default ``hydra/sweeper=basic``, Hydra's own composing each member's config once."""
