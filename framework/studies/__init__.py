"""Studies: many runs launched as one (Hydra multiruns, Optuna tuning) and what is learned from them."""
