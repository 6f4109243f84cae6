#!/usr/bin/env bash
# Put a Jetson into a power mode with its clocks pinned for stable timing, and back.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: jetson/clocks.sh MODE        set nvpmodel MODE (MAXN, 50W, 40W, 30W, 15W or its ID) and
                                     run jetson_clocks, saving the previous state first
       jetson/clocks.sh --restore   go back to the state saved by the last MODE call
       jetson/clocks.sh --show      print the current mode and clocks

Timings taken at the boot default (30W on AGX Orin) are half those at MAXN, and DVFS adds
noise: set the mode the profile asks for (dpedge profile --power-mode checks it), then
restore. Needs root (runs sudo when not root). The state is kept in
${XDG_STATE_HOME:-~/.local/state}/dpedge/clocks.
USAGE
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

state="${XDG_STATE_HOME:-$HOME/.local/state}/dpedge/clocks"
conf="/etc/nvpmodel.conf"

mode_id() {
    # A name (MAXN, 30W...) -> its ID in this module's nvpmodel.conf ("< POWER_MODEL ID=2 NAME=MODE_30W >").
    local wanted="$1"
    case "$wanted" in
        ''|*[!0-9]*) ;;
        *) echo "$wanted"; return 0 ;;
    esac
    [ "$wanted" = MAXN ] || wanted="MODE_$wanted"
    local id
    id="$(sed -n "s/.*POWER_MODEL ID=\([0-9]*\) NAME=${wanted} *>.*/\1/p" "$conf" | head -n 1)"
    if [ -z "$id" ]; then
        echo "error: this module's $conf has no mode $1; its modes: $(sed -n 's/.*POWER_MODEL ID=[0-9]* NAME=\([A-Z0-9_]*\).*/\1/p' "$conf" | tr '\n' ' ')" >&2
        return 1
    fi
    echo "$id"
}

case "${1:-}" in
    -h|--help) usage; exit 0 ;;
    "") usage >&2; exit 2 ;;
esac
for tool in nvpmodel jetson_clocks; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found: not a Jetson with JetPack" >&2; exit 1; }
done

case "$1" in
    --show)
        nvpmodel -q
        as_root jetson_clocks --show
        ;;
    --restore)
        [ -r "$state/mode" ] || { echo "error: no saved state in $state: nothing to restore" >&2; exit 1; }
        as_root jetson_clocks --restore "$state/clocks.conf"
        as_root nvpmodel -m "$(cat "$state/mode")"
        echo "restored nvpmodel mode $(cat "$state/mode") and the clocks saved in $state"
        ;;
    *)
        id="$(mode_id "$1")"
        mkdir -p "$state"
        nvpmodel -q | sed -n '2p' | tr -d ' ' > "$state/mode"
        as_root jetson_clocks --store "$state/clocks.conf"
        as_root nvpmodel -m "$id"
        as_root jetson_clocks
        echo "nvpmodel mode $1 (ID $id) with clocks pinned; jetson/clocks.sh --restore goes back to mode $(cat "$state/mode")"
        ;;
esac
