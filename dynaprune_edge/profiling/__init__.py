"""Measuring what the exported models cost: per-sample latency statistics, where onnxruntime
spends its kernel time, and the performance summary of a trtexec run on the device.

Imports neither torch nor fvcore: this package goes onto the Jetson."""
