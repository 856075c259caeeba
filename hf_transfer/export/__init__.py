"""`hf-transfer export`: a trained classifier as an ONNX graph (and an int8 one), checked against PyTorch."""
