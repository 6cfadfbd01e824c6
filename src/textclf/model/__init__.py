"""Texts -> labels with ONNX Runtime: encoding, the predictor (the Python API), the result cache. No torch."""
