"""Training and ONNX export (the only part of `models` that imports torch)."""
