"""model.pt → ONNX in which each sample runs its own sub-network of kept filters and regions
(`exporter`), and TensorRT engines from it (`tensorrt`); docs/design.md, "Export"."""
