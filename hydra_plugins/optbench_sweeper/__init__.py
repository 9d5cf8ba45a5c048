"""optbench's Hydra sweeper plugin: ``hydra/sweeper=optuna`` (Optuna >= 4, ask/tell, journal storage)."""
