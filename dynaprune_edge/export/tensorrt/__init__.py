"""TensorRT engines from an exported graph: built here where tensorrt imports, else explained for the Jetson.

See docs/design.md, "Export" and "TensorRT and the Jetson AGX Orin". Where `tensorrt`
imports, `build.build_or_explain` builds the engine with the TensorRT Python API (ONNX
parser, explicit batch, fp32/fp16/int8, timing cache, workspace limit), writes it
atomically as `<model>.<device>.trt<version>.<precision>.engine` with its metadata file,
and checks it against onnxruntime with Polygraphy. Where it does not, nothing fails
silently: the outcome carries the reason and the exact `trtexec` command to run on the
Jetson instead.

One job a module: `names` (file names, precisions, tolerances), `commands` (the trtexec
and polygraphy command lines), `build` (the engine, or why not and how), `calibrator`
(int8 calibration) and `polygraphy` (the onnxruntime-vs-engine check). Reading trtexec's
performance summary of a run on the device is `dynaprune_edge.profiling.trtexec`.

tensorrt, pycuda and polygraphy are imported lazily, inside the functions that use them:
every module here imports where none of them is installed. No torch here.
"""
