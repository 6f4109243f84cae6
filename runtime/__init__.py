"""Inference backends behind one interface (onnxruntime, TensorRT, Orin emulator).

Imports neither torch nor fvcore: this package goes onto the Jetson."""
