"""`hf-transfer evaluate`: score a classifier on labelled sets."""
