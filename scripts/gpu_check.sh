#!/usr/bin/env bash
# The GPU check of the split layout (docs/design.md, "Split layout"): run it on any machine
# with an NVIDIA GPU, from the repository root, with the Python that has torch (and, where
# there, tensorrt and pycuda). Needs no network: it installs dpedge itself only (no
# dependencies, no build isolation) when that Python cannot import it, and accepts the torch,
# onnx and onnxruntime versions it finds. Prints one table and writes runs/gpu-check/gpu-check.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import dynaprune_edge" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-deps --no-build-isolation -e .
fi
missing=$("$PYTHON" - <<'PY'
import importlib.util
print(" ".join(m for m in ("torch", "numpy", "typer", "rich", "onnx", "onnxruntime") if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
    echo "error: this Python lacks $missing (install them, then rerun)" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || echo "note: nvidia-smi not found"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'GPU', torch.cuda.is_available())"
exec timeout 480 "$PYTHON" -m dynaprune_edge bench gpu-check --out runs/gpu-check "$@"
