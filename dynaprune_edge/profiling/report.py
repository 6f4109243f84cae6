"""`dpedge profile --report DIR`: report.json (everything), four PNG plots (a fifth,
power_trace.png, where power was measured) and report.md,
which says on what machine and with what software the figures were taken and which of
them are measured and which emulated.

matplotlib (the `plots` extra) is imported inside `write_report`, with the Agg backend:
no display is needed (CI, a Jetson over SSH)."""

from __future__ import annotations

import contextlib
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import atomic_write_bytes, atomic_write_text
from dynaprune_edge.profiling.session import EMULATED, Profile

FIGURE_INCHES = (8.0, 5.0)
DPI = 100  # every plot is 800 × 500 pixels
PLOTS = {
    "latency_histogram.png": "latency per sample, dense twin vs pruned",
    "flops_vs_latency.png": "executed FLOPs vs latency per sample, by branch",
    "masks.png": "input frames with the DataMask (kept regions) overlaid: calmest, median and busiest samples",
    "filter_share.png": "kept-filter share per layer in each branch",
}
POWER_PLOT = (
    "power_trace.png",
    "module power over each power phase: idle, pruned, dense twin (when power was measured)",
)


def versions() -> dict[str, str]:
    """dpedge and the inference libraries installed here; TensorRT and JetPack where known."""
    found = {}
    for package in ("dynaprune-edge", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    release = Path("/etc/nv_tegra_release")
    if release.is_file():  # L4T on a Jetson: "# R35 (release), REVISION: 4.1, …"
        found["l4t"] = release.read_text(errors="replace").splitlines()[0].lstrip("# ").strip()
    return found


def machine() -> dict:
    from dynaprune_edge.hardware import cpu_model

    return {
        "host": platform.node(),
        "cpu": cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--report draws its plots with matplotlib: pip install 'dynaprune-edge[plots]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(profile: Profile, folder: Path, settings: dict) -> list[Path]:
    """Write the report into `folder` (created); returns the files written."""
    plt = import_pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    summary = {**profile.summary(), "settings": settings, "machine": machine(), "versions": versions()}
    written = [folder / "report.json"]
    atomic_write_text(json.dumps(summary, indent=2) + "\n", written[0])
    unit = f"{profile.latency_kind} ms"
    plots = [
        ("latency_histogram.png", latency_histogram),
        ("flops_vs_latency.png", flops_vs_latency),
        ("masks.png", masks),
        ("filter_share.png", filter_share),
    ]
    if profile.power is not None:
        plots.append((POWER_PLOT[0], power_trace))
    for name, draw in plots:
        figure = plt.figure(figsize=FIGURE_INCHES, dpi=DPI)
        draw(figure, profile, unit)
        figure.tight_layout()
        written.append(folder / name)
        atomic_write_bytes(png_bytes(figure), written[-1])
        plt.close(figure)
    written.append(folder / "report.md")
    atomic_write_text(markdown(summary, profile), written[-1])
    return written


def png_bytes(figure) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox "tight": the size stays FIGURE_INCHES × DPI
    return buffer.getvalue()


def latency_histogram(figure, profile: Profile, unit: str) -> None:
    axes = figure.add_subplot()
    low = min(profile.dense_ms.min(), profile.sparse_ms.min())
    high = max(profile.dense_ms.max(), profile.sparse_ms.max())
    bins = np.linspace(low, high if high > low else low + 1e-3, 40)
    axes.hist(profile.dense_ms, bins=bins, alpha=0.6, label=f"dense twin (mean {profile.dense_ms.mean():.3f})")
    axes.hist(profile.sparse_ms, bins=bins, alpha=0.6, label=f"pruned (mean {profile.sparse_ms.mean():.3f})")
    axes.set_xlabel(f"latency per sample ({unit}, batch 1)")
    axes.set_ylabel("runs" if profile.latency_kind != EMULATED else "samples")
    axes.set_title(
        f"{profile.manifest.backbone} on {profile.manifest.dataset}: {profile.speedup:.2f}× vs dense ({profile.latency_kind})"
    )
    axes.legend()


def flops_vs_latency(figure, profile: Profile, unit: str) -> None:
    axes = figure.add_subplot()
    ratio = profile.flops / profile.dense_flops
    points = axes.scatter(ratio, profile.sample_sparse_ms, c=profile.branch, cmap="viridis", s=18)
    axes.axhline(profile.sample_dense_ms.mean(), color="grey", linestyle="--", label="dense twin, mean")
    axes.set_xlabel("executed FLOPs / dense FLOPs (per sample)")
    axes.set_ylabel(f"latency ({unit})")
    axes.set_title("per sample: what the branch it took executed, and what that cost")
    figure.colorbar(points, ax=axes, label="branch")
    axes.legend(loc="upper left")


def masks(figure, profile: Profile, unit: str) -> None:
    """The calmest, the median and the busiest sample: its last input frame (first
    channel, physical units) with the regions it skipped shaded."""
    order = np.argsort(profile.activity)
    picks = [order[0], order[len(order) // 2], order[-1]]
    for column, index in enumerate(picks, start=1):
        axes = figure.add_subplot(1, 3, column)
        frame = profile.frames[index, -1, 0]
        axes.imshow(frame, cmap="Blues", interpolation="nearest")
        if profile.masks is not None:
            mask = profile.masks[index]
            scale = (frame.shape[0] / mask.shape[0], frame.shape[1] / mask.shape[1])
            full = np.kron(mask, np.ones((int(np.ceil(scale[0])), int(np.ceil(scale[1])))))[
                : frame.shape[0], : frame.shape[1]
            ]
            axes.imshow(
                np.ma.masked_where(full > 0.5, np.ones_like(full)),
                cmap="Greys",
                alpha=0.55,
                vmin=0,
                vmax=1.5,
                interpolation="nearest",
            )
            kept = f"{int(mask.sum())}/{mask.size} regions kept"
        else:
            kept = "dense: every region"
        which = ("calmest", "median", "busiest")[column - 1]
        axes.set_title(
            f"{which}: {kept}\nbranch {profile.branch[index]}, {profile.sample_sparse_ms[index]:.3f} {unit}", fontsize=9
        )
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle("last input frame; shaded: regions skipped (persistence)", fontsize=10)


def filter_share(figure, profile: Profile, unit: str) -> None:
    axes = figure.add_subplot()
    branches = [row for row in profile.branches() if row["kept_filter_share"]]
    gates = list(profile.manifest.gate_groups)
    if not branches or not gates:
        axes.text(0.5, 0.5, "no filter gates (dense export)", ha="center", va="center")
        axes.set_axis_off()
        return
    shares = np.array([[row["kept_filter_share"][g] for g in gates] for row in branches])
    image = axes.imshow(shares, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    axes.set_yticks(
        range(len(branches)), [f"branch {r['branch']} ({r['samples']} samples)" for r in branches], fontsize=8
    )
    axes.set_xticks(range(len(gates)), gates, rotation=60, ha="right", fontsize=7)
    axes.set_title("share of each layer's filters a branch keeps")
    figure.colorbar(image, ax=axes, label="kept filters / all")


def power_trace(figure, profile: Profile, unit: str) -> None:
    power = profile.power.summary()
    axes = figure.add_subplot()
    step = power["interval_ms"] / 1000
    for role, name in (("idle", "idle"), ("sparse", "pruned"), ("dense", "dense twin")):
        phase = power.get(role)
        if phase:
            energy = f", {phase['energy_mj']:.3f} mJ/inference" if "energy_mj" in phase else ""
            axes.plot(
                np.arange(len(phase["trace_mw"])) * step,
                np.asarray(phase["trace_mw"]) / 1000,
                marker=".",
                label=f"{name}: mean {phase['mean_mw'] / 1000:.2f} W{energy}",
            )
    axes.set_xlabel("seconds into the phase (approximate: one reading per interval)")
    axes.set_ylabel(f"module power, W ({power['idle' if power['idle'] else 'sparse']['total_of']})")
    axes.set_title(f"power MEASURED by {power['meter']}, each model running alone")
    axes.legend()


POWER_COLUMNS = ("phase", "readings", "mean W", "runs", "ms per inference", "mJ per inference", "mJ above idle")


def power_rows(power: dict) -> list[tuple[str, ...]]:
    rows = []
    for role, name in (("idle", "idle"), ("dense", "dense twin"), ("sparse", "pruned")):
        phase = power.get(role)
        if not phase:
            continue
        ran = "runs" in phase
        dynamic = phase.get("dynamic_energy_mj")
        rows.append(
            (
                name,
                str(phase["samples"]),
                f"{phase['mean_mw'] / 1000:.3f}",
                str(phase["runs"]) if ran else "–",
                f"{phase['latency_ms_mean']:.3f}" if ran else "–",
                f"{phase['energy_mj']:.4f}" if ran else "–",
                "–" if dynamic is None else f"{dynamic:.4f}",
            )
        )
    return rows


def power_notes(power: dict) -> list[str]:
    notes = [f"total power: {(power['idle'] or power['sparse'])['total_of']}"]
    if "energy_ratio" in power:
        notes.append(
            f"energy per inference, dense twin / pruned: {power['energy_ratio']:.2f}×"
            + (f" (above idle: {power['dynamic_energy_ratio']:.2f}×)" if "dynamic_energy_ratio" in power else "")
        )
    return notes


KERNEL_COLUMNS = (
    "model",
    "branch",
    "kernels",
    "overhead-bound",
    "compute-bound",
    "memory-bound",
    "emulated ms",
    "of it, work (not overhead)",
)


def kernel_rows(kernels: dict) -> list[tuple[str, ...]]:
    """What the emulated time of each branch the samples took, and of the dense twin, is
    made of: kernels by what bounds them, and the time left without the per-kernel cost."""
    rows = []
    for name, routes in (("pruned", kernels["sparse"]), ("dense twin", kernels["dense"])):
        for branch, route in routes.items():
            bounds = [k["bound"] for k in route]
            work = sum(max(k["compute_ms"], k["memory_ms"]) for k in route)
            rows.append(
                (
                    name,
                    branch,
                    str(len(route)),
                    *(str(bounds.count(b)) for b in ("overhead", "compute", "memory")),
                    f"{sum(k['ms'] for k in route):.3f}",
                    f"{work:.3f}",
                )
            )
    return rows


def kernel_summary(kernels: dict) -> str:
    lines = ["| " + " | ".join(KERNEL_COLUMNS) + " |", "|" + "---|" * len(KERNEL_COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in kernel_rows(kernels)])


def device_rows(on_device: dict) -> list[tuple[str, ...]]:
    """One row per engine run by trtexec: what it ran and what trtexec measured (ms)."""
    rows = []
    for role, name in (("dense", "dense twin"), ("sparse", "pruned")):
        if role in on_device:
            run = on_device[role]
            gpu = run["summary"].get("gpu_compute_ms") or run["summary"]["latency_ms"]
            host = run["summary"].get("latency_ms", {})
            rows.append(
                (
                    name,
                    run["engine"] or "(not named in the log)",
                    "(not named in the log)" if run["gpu"] is None else run["gpu"]["name"],
                    run["tensorrt"] or "?",
                    *(f"{gpu[k]:.3f}" if k in gpu else "–" for k in ("median", "mean", "p99")),
                    f"{host['median']:.3f}" if "median" in host else "–",
                    "–" if run["layers"] is None else str(len(run["layers"])),
                )
            )
    return rows


DEVICE_COLUMNS = (
    "engine of",
    "engine",
    "GPU",
    "TensorRT",
    "GPU median ms",
    "mean",
    "p99",
    "host latency median",
    "layers profiled",
)


def device_notes(on_device: dict) -> list[str]:
    """The measured speedup and the emulator's error on this model, as sentences."""
    notes = []
    if "speedup" in on_device:
        notes.append(f"measured speedup on the device (median GPU time, trtexec's input): {on_device['speedup']:.2f}×")
    check = on_device.get("emulated_vs_measured", {})
    if "dense" in check:
        dense = check["dense"]
        layers = (
            ""
            if dense["measured_layers"] is None
            else f"; {dense['emulated_kernels']} emulated kernels against {dense['measured_layers']} profiled layers"
        )
        notes.append(
            f"dense twin: emulated {dense['emulated_ms']:.3f} ms, measured {dense['measured_ms']:.3f} ms: "
            f"the emulator is {100 * dense['error']:+.0f} % off on this model{layers}"
        )
    if "sparse" in check:
        low, high = check["sparse"]["emulated_ms_range"]
        notes.append(
            f"pruned: emulated {low:.3f}–{high:.3f} ms over the branches the samples took, measured {check['sparse']['measured_ms']:.3f} ms "
            "on the one branch trtexec's input took"
        )
    for role, name in (("dense", "dense twin"), ("sparse", "pruned")):
        if role in on_device.get("calibrated", {}):
            found = on_device["calibrated"][role]
            first = (
                f"{found['emulated_ms']:.3f} ms"
                if "emulated_ms" in found
                else "{:.3f}–{:.3f} ms over the samples' branches".format(*found["emulated_ms_range"])
            )
            notes.append(
                f"{name} on the Orin, EMULATED two ways: first principles {first}; calibrated on {found['measured_on']} "
                f"(measured there {found['measured_ms']:.3f} ms, trtexec's branch) {found['calibrated_ms']:.3f} ms"
            )
    return notes


def measured_section(
    title: str, label: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], notes: list[str]
) -> list[str]:
    """The report's lines for figures measured on the device (a trtexec run, the power rails):
    a heading that says so, what was measured, a table and its notes."""
    return [
        f"## {title}: MEASURED",
        "",
        label + ".",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        *(f"- {note}" for note in notes),
        "",
    ]


def markdown(summary: dict, profile: Profile) -> str:
    latency, flops = summary["latency"], summary["flops"]
    kind = latency["kind"]
    backend = summary["backend"]
    emulated = kind == EMULATED
    lines = [
        f"# dpedge profile: {profile.manifest.backbone} on {profile.manifest.dataset}",
        "",
        f"**Latency figures are {kind.upper()}**: {latency['label']}."
        + (" They are predictions of a roofline model, not measurements on a Jetson." if emulated else "")
        + (
            " The figures under 'trtexec runs' are MEASURED on the GPU each names; what they are scaled to on the Orin is EMULATED."
            if "trtexec" in summary
            else ""
        ),
        "FLOPs are what the graph reports it executed (computed, neither measured nor emulated).",
        "",
        "## Where",
        "",
        f"- machine: {summary['machine']['cpu']} ({summary['machine']['platform']})",
        f"- backend: {backend['backend']} on {backend.get('device', 'unknown')}",
        f"- threads: {backend.get('threads', 'n/a')}",
    ]
    if emulated:
        emulator = backend["emulator"]
        lines.append(
            f"- emulated device: Jetson {emulator['module']}, power mode {emulator['power_mode']} ({emulator['sms']} SMs at "
            f"{emulator['gpu_mhz']:g} MHz, memory {emulator['memory_gb_s']:.1f} GB/s), precision {emulator['precision']}"
        )
    elif "power_mode" in summary["settings"]:
        lines.append(f"- power mode: {summary['settings']['power_mode']}")
    lines += [f"- {name}: {version}" for name, version in summary["versions"].items()]
    lines += [
        "",
        f"- data: {summary['data']}",
        "",
        "## Latency",
        "",
        "| model | mean | p50 | p90 | p99 | runs |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("dense", "sparse"):
        stats = latency[name]
        lines.append(
            f"| {'dense twin' if name == 'dense' else 'pruned'} ({kind}) | {stats['mean']:.3f} | {stats['p50']:.3f} | {stats['p90']:.3f} | {stats['p99']:.3f} | {stats['n']} |"
        )
    lines += [
        "",
        f"Speedup ({kind}): **{latency['speedup']:.2f}×** (mean dense / mean pruned). "
        f"FLOPs: {flops['ratio_mean']:.3f} of dense on average, at most {flops['ratio_max']:.3f} ({flops['convention']}).",
        "",
        "![latency](latency_histogram.png)",
        "",
        "## Branches",
        "",
        f"| branch | kept regions | FLOPs ratio | samples | {kind} ms | mean activity |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["branches"]:
        ms, act = row[f"{kind}_ms"], row["activity_mean"]
        lines.append(
            f"| {row['branch']} | {'–'.join(map(str, row['kept_regions']))} | {row['flops_ratio']:.3f} | {row['samples']} | "
            f"{'–' if ms is None else f'{ms:.3f}'} | {'–' if act is None else f'{act:.4g}'} |"
        )
    split = summary["calm_vs_busy"]
    lines += [
        "",
        "![FLOPs vs latency](flops_vs_latency.png)",
        "",
        "## Calm vs busy inputs",
        "",
        f"Samples split at the median activity ({split['activity_threshold']:.4g}; {split['activity_unit']}).",
        "",
        f"| half | samples | mean activity | FLOPs ratio | {kind} ms |",
        "|---|---|---|---|---|",
    ]
    for half in ("calm", "busy"):
        if half in split:
            row = split[half]
            lines.append(
                f"| {half} | {row['samples']} | {row['activity_mean']:.4g} | {row['flops_ratio_mean']:.3f} | {row[f'{kind}_ms_mean']:.3f} |"
            )
    lines += ["", "![masks](masks.png)", "", "![filter share](filter_share.png)", ""]
    if "trtexec" in summary:
        on_device = summary["trtexec"]
        lines += measured_section(
            "trtexec runs", on_device["label"], DEVICE_COLUMNS, device_rows(on_device), device_notes(on_device)
        )
    if "power" in summary:
        power = summary["power"]
        lines += measured_section(
            "Power and energy", power["label"], POWER_COLUMNS, power_rows(power), power_notes(power)
        )
        lines += [f"![power]({POWER_PLOT[0]})", ""]
    if emulated:
        from dynaprune_edge.cost.orin import constants_markdown

        lines += [
            "## Emulated kernels",
            "",
            kernel_summary(summary["emulated_kernels"]),
            "",
            "## Emulator constants",
            "",
            constants_markdown(),
            "",
        ]
    return "\n".join(lines)
