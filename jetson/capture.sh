#!/usr/bin/env bash
# Record tegrastats (power rails, clocks, temperatures) for exactly as long as a command runs.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: jetson/capture.sh [--interval MS] [--out FILE] -- COMMAND [ARGS...]

Starts tegrastats (every MS milliseconds, default 100) logging to FILE (default
tegrastats.log), runs COMMAND, stops tegrastats when it ends (also on Ctrl-C) and exits
with COMMAND's status. The log's lines hold the power rails in mW, "instant/average"
(AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0; Orin NX/Nano: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC).
Example: jetson/capture.sh --out run.tegrastats -- dpedge profile model.orin.trt8.5.fp16.engine --backend trt
USAGE
}

interval=100
out="tegrastats.log"
while [ "$#" -gt 0 ]; do
    case "$1" in
        --interval) interval="${2:?--interval needs milliseconds}"; shift 2 ;;
        --out) out="${2:?--out needs a file}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) echo "error: unknown option $1 (the command goes after --; see --help)" >&2; exit 2 ;;
    esac
done
[ "$#" -gt 0 ] || { echo "error: no command to capture (jetson/capture.sh [options] -- COMMAND)" >&2; exit 2; }
case "$interval" in
    ''|*[!0-9]*) echo "error: --interval must be whole milliseconds, got $interval" >&2; exit 2 ;;
esac
command -v tegrastats >/dev/null 2>&1 || { echo "error: tegrastats not found: not a Jetson with JetPack" >&2; exit 1; }

tegrastats --interval "$interval" --logfile "$out" &
recorder=$!
stop() { kill "$recorder" 2>/dev/null || true; wait "$recorder" 2>/dev/null || true; }
trap stop EXIT INT TERM
status=0
"$@" || status=$?
stop
trap - EXIT INT TERM
echo "tegrastats every ${interval} ms while \`$*\` ran: $out ($(wc -l < "$out") lines)" >&2
exit "$status"
