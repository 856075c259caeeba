"""`hf-transfer predict`: label a file with a trained classifier, streaming it in chunks."""
