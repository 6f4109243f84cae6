#!/usr/bin/env bash
# Install the dpedge runtime (no torch) on a Jetson with JetPack 5.1 or 6.x, after printing
# and checking the JetPack, L4T, CUDA and TensorRT versions it finds.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: jetson/setup.sh [--prefix DIR] [--from SPEC] [--check]

Installs the dpedge runtime into a virtual environment on a Jetson (JetPack 5.1 or 6.x):
onnxruntime, onnx and dpedge itself, no torch. The environment sees JetPack's own
TensorRT Python module (--system-site-packages); pycuda is installed for the trt backend.

  --prefix DIR   where the environment goes (default: ~/dpedge)
  --from SPEC    what pip installs dpedge from: a checkout or wheel copied to the device
                 (default: dynaprune-edge from the package index)
  --check        only print the versions found and whether they are supported
  -h, --help     this text

Afterwards: dpedge deploy ... --remote-dpedge DIR/bin/dpedge (or put DIR/bin on PATH).
NV_TEGRA_RELEASE names another copy of /etc/nv_tegra_release to read (for testing).
USAGE
}

prefix="${HOME}/dpedge"
from="dynaprune-edge"
check_only=0
while [ "$#" -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
        --from) from="${2:?--from needs a path or package}"; shift 2 ;;
        --check) check_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

release_file="${NV_TEGRA_RELEASE:-/etc/nv_tegra_release}"
if [ ! -r "$release_file" ]; then
    echo "error: not a Jetson: $release_file is missing (JetPack writes it)" >&2
    exit 1
fi
# "# R35 (release), REVISION: 4.1, GCID: ..." -> major 35, revision 4.1
release_line="$(head -n 1 "$release_file")"
major="$(sed -n 's/^# R\([0-9]*\) (release).*/\1/p' <<<"$release_line")"
revision="$(sed -n 's/.*REVISION: \([0-9.]*\).*/\1/p' <<<"$release_line")"
if [ -z "$major" ] || [ -z "$revision" ]; then
    echo "error: cannot read the L4T release from $release_file: $release_line" >&2
    exit 1
fi
l4t="$major.$revision"
case "$l4t" in
    35.2.*) jetpack="5.1" ;;
    35.3.*) jetpack="5.1.1" ;;
    35.4.*) jetpack="5.1.2" ;;
    35.5.*) jetpack="5.1.3" ;;
    35.6.*) jetpack="5.1.4" ;;
    36.3.*) jetpack="6.0" ;;
    36.4.0) jetpack="6.1" ;;
    36.4.*) jetpack="6.2" ;;
    36.*) jetpack="6.x" ;;
    *) jetpack="" ;;
esac

cuda="not found"
if [ -r /usr/local/cuda/version.json ]; then
    cuda="$(sed -n 's/.*"version" *: *"\([0-9.]*\)".*/\1/p' /usr/local/cuda/version.json | head -n 1)"
elif command -v nvcc >/dev/null 2>&1; then
    cuda="$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
fi
tensorrt="$(dpkg-query -W -f='${Version}' libnvinfer10 2>/dev/null || dpkg-query -W -f='${Version}' libnvinfer8 2>/dev/null || echo "not found")"

echo "L4T:      R$l4t"
echo "JetPack:  ${jetpack:-unsupported}"
echo "CUDA:     $cuda"
echo "TensorRT: $tensorrt"

if [ -z "$jetpack" ]; then
    echo "error: L4T R$l4t is not JetPack 5.1 or 6.x, which dpedge supports (its TensorRT 8.5-10.3); upgrade with NVIDIA SDK Manager" >&2
    exit 1
fi
if [ "$tensorrt" = "not found" ]; then
    echo "warning: no TensorRT package: install it (sudo apt install nvidia-tensorrt) for --backend trt; onnxruntime works without it" >&2
fi
if [ "$check_only" = 1 ]; then
    exit 0
fi

python3 -m venv --system-site-packages "$prefix"
"$prefix/bin/python" -m pip install --quiet --upgrade pip
"$prefix/bin/python" -m pip install --quiet "${from}[export]"
if [ "$tensorrt" != "not found" ]; then
    "$prefix/bin/python" -m pip install --quiet pycuda || echo "warning: pycuda did not build: the trt backend needs it (CUDA headers under /usr/local/cuda)" >&2
fi
"$prefix/bin/dpedge" device
echo "installed: $prefix/bin/dpedge (dpedge deploy ... --remote-dpedge $prefix/bin/dpedge)"
