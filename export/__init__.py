"""model.pt → ONNX with per-sample gated sub-networks, and TensorRT engines (DESIGN.md §5)."""
