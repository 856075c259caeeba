"""What a run leaves behind: the run folder, plots, the model card, and pushing to the Hub."""
