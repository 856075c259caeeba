"""`hf-transfer merge`: WiSE-FT weight interpolation and its α sweep."""
