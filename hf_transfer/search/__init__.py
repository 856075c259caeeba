"""`hf-transfer search`: an Optuna study over a train or distill config, each trial one run of that command."""
