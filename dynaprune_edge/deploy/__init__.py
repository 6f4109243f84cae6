"""`dpedge deploy MODEL.onnx --host USER@HOST`: check the device, copy the model there,
build its TensorRT engines on it (engines are not portable between devices or TensorRT
versions) or copy engines built on an identical device (--engine), check every engine
there, profile it there and bring the report back. Every step goes through deploy.ssh
(quoted words, verified copies renamed into place)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from dynaprune_edge.deploy.ssh import RemoteError, Session, Target, remote_path
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.names import check_precision, short_version
from dynaprune_edge.files import sha256_file
from dynaprune_edge.profiling.power import check_meter
from dynaprune_edge.progress import stderr_console
from dynaprune_edge.runtime.jetson import SUPPORTED_L4T_MAJORS
from dynaprune_edge.runtime.manifest import manifest_path, read_manifest

BACKENDS = ("trt", "ort")  # ort: a device without TensorRT (and the tests, which have no GPU)
POWER_MODES = ("MAXN", "50W", "30W", "15W")
DISK_MARGIN = 64 << 20  # bytes left free beyond the copies: engines and the report are written there too


@dataclass(frozen=True)
class DeployOptions:
    remote_dir: str = "dpedge-deploy"
    build_engine: bool = False
    precision: str = "fp16"
    profile: bool = False
    backend: str = "trt"
    power_mode: str | None = None
    power: str = "auto"  # the profile's power meter on the device (profiling.power.METERS)
    report: Path | None = None  # default: MODEL's folder, report-HOST
    data: str | None = None  # where the profile's validation windows come from (dpedge profile --data)
    samples: int = 64
    remote_dpedge: str = "dpedge"
    engine: Path | None = None  # an engine or bundle built earlier on an identical device, copied instead of built

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.engine is not None and self.build_engine:
            raise ConfigError(
                "--engine copies engines built on an identical device, --build-engine builds them on this one: give one of them"
            )
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.power_mode is not None and self.power_mode not in POWER_MODES:
            raise ConfigError(f"--power-mode must be one of {', '.join(POWER_MODES)}, got {self.power_mode!r}")
        check_meter(self.power)
        if self.power_mode is not None and not (self.profile and self.backend == "trt"):
            raise ConfigError(
                "--power-mode is the mode the Jetson must be in while --profile times it on trt: add --profile"
            )
        if self.profile and self.backend == "trt" and not (self.build_engine or self.engine):
            raise ConfigError(
                "--profile on trt times the engines this deploy builds on the device: add --build-engine (or --engine PATH "
                "built on an identical device, or --backend ort)"
            )
        if self.samples < 1:
            raise ConfigError(f"--samples must be ≥ 1, got {self.samples}")
        remote_path(self.remote_dir)
        if self.remote_dpedge != "dpedge":
            remote_path(self.remote_dpedge, "--remote-dpedge")


def local_files(model: Path, options: DeployOptions, log: Callable[[str], None]) -> list[Path]:
    """What goes to the device, each graph before its manifest: the model, its dense twin
    (the profile's baseline), and, for profiling or int8 calibration, the validation windows
    in a frames file (the device needs no torch and no data for them)."""
    from dynaprune_edge.export.tensorrt.build import onnx_input_dynamic
    from dynaprune_edge.profile import dense_twin, profile_frames
    from dynaprune_edge.runtime.frames import frames_path, save_frames

    manifest = read_manifest(model)
    onnx_input_dynamic(model, manifest.input)  # a graph its manifest does not describe stays here
    files = [model, manifest_path(model)]
    twin = dense_twin(model, model, manifest, log)
    if twin != model:
        onnx_input_dynamic(twin, read_manifest(twin).input)
        files += [twin, manifest_path(twin)]
    if options.profile or options.precision == "int8":
        frames, described = profile_frames(manifest, model, options.data, options.samples)
        save_frames(frames_path(model), frames, described)
        files.append(frames_path(model))
    return files


@dataclass(frozen=True)
class BuiltEngines:
    """An engine or bundle built earlier (--engine), checked here: the path the trt backend
    loads, its metadata file, each engine file it lists (role, file, sha256) and the
    TensorRT it was built with."""

    path: Path
    metadata: Path
    engines: list[dict]
    trt_version: str

    @property
    def files(self) -> list[Path]:
        """What to copy, in order: every engine, then the metadata that names them (a copy
        cut short leaves the device's previous metadata, which names its own engines)."""
        return [self.path.with_name(engine["file"]) for engine in self.engines] + [self.metadata]


def built_engines(path: Path, graph: Path) -> BuiltEngines:
    """The engine or bundle at `path`, refused in one line unless it was built from `graph`
    (the same SHA-256) and every engine file it lists is beside it, as listed."""
    from dynaprune_edge.runtime.tensorrt import BundleMeta, bundle_engines, engine_bytes, engine_files

    path, meta, metadata, engines = engine_files(path)
    if (meta.onnx, meta.onnx_sha256) != (graph.name, sha256_file(graph)):
        raise ConfigError(
            f"{path.name} was built from {'another ' if meta.onnx == graph.name else ''}{meta.onnx}, not from the "
            f"{graph} deployed: deploy its graph, or build the engines on the device with --build-engine"
        )
    if isinstance(meta, BundleMeta):
        bundle_engines(path, meta)
    else:
        engine_bytes(path, meta)
    return BuiltEngines(
        path, metadata, [{"role": e.role, "file": e.file, "sha256": e.sha256} for e in engines], meta.trt_version
    )


def engines_to_copy(model: Path, given: BuiltEngines, options: DeployOptions) -> list[BuiltEngines]:
    """--engine: the model's engine or bundle (`given`), and the dense twin's engine where
    it lies beside it (--profile on trt needs it), checked here before anything is copied."""
    from dynaprune_edge.profile import dense_twin

    manifest = read_manifest(model)
    if manifest.mode == "dense":
        return [given]
    try:
        twin = dense_twin(model, given.path, manifest)
    except ConfigError as missing:
        if options.profile and options.backend == "trt":
            raise ConfigError(
                f"--profile on trt times the dense twin's engine too: {missing}; or deploy with --build-engine"
            ) from None
        return [given]
    return [given, built_engines(twin, model.with_name(model.stem + ".dense.onnx"))]


def engine_count(roles: list[str]) -> str:
    """ "6 engines (router, 4 branches, bypass)", or "1 engine" for a single engine."""
    if roles == ["engine"]:
        return "1 engine"
    branches = sum(role.startswith("branch") for role in roles)
    parts = (
        ["router"] * ("router" in roles)
        + [f"{branches} branch{'es' * (branches != 1)}"]
        + ["bypass"] * ("bypass" in roles)
    )
    return f"{len(roles)} engines ({', '.join(parts)})"


def check_engines(
    session: Session, dpedge: str, remote: PurePosixPath, expected: list[dict], how: str, model: Path, console: Console
) -> dict:
    """`dpedge engine REMOTE --check --json` on the device: every engine file the metadata
    there lists is beside it with its SHA-256, built for that GPU and TensorRT from the
    graph beside it; and those engines are `expected` (role, file, sha256), the ones `how`
    ("copied", "built") there. One line per engine or bundle says how many engines were
    checked; any mismatch is a RemoteError in one line naming the rebuild."""
    target = session.target
    rebuild = f"build the engines on {target.host} with dpedge deploy {model.name} --host {target} --build-engine"
    with stderr_console.status(f"checking {remote.name} on {target.host}"):
        try:
            out = session.run([dpedge, "engine", remote, "--check", "--json"], f"checking {remote.name}")
        except RemoteError as error:
            raise RemoteError(f"{error}; {rebuild}") from None
    checked = last_json_line(out, f"`dpedge engine --check` on {target.host}")
    if checked.get("engines") != expected:
        raise RemoteError(
            f"{remote.name} on {target.host} lists other engines than those {how} there (replaced meanwhile?); {rebuild}"
        )
    kind = "bundle" if checked["layout"] == "split" else "engine"
    console.print(
        f"{kind} {remote} on {target.host}: {engine_count([e['role'] for e in expected])}, each checked there by SHA-256, "
        f"built for its {checked['device']} with TensorRT {checked['tensorrt']}",
        markup=False,
        soft_wrap=True,
    )
    return checked


def deploy(model: Path, target: Target, options: DeployOptions, console: Console) -> dict:
    """Run every step; returns what was found and done (the device facts, the engines, the report folder)."""
    model = Path(model)
    if model.suffix != ".onnx" or not model.is_file():
        raise ConfigError(f"{model}: expected an exported .onnx (dpedge export MODEL.pt writes one)")
    # what goes over first: a damaged pair, bad --data or --engine is refused before connecting
    given = built_engines(options.engine, model) if options.engine else None
    files = local_files(model, options, lambda line: stderr_console.print(line, markup=False, highlight=False))
    built = engines_to_copy(model, given, options) if given else []
    files += [file for engines in built for file in engines.files]
    size = sum(f.stat().st_size for f in files)
    session = Session(target)
    folder = remote_path(options.remote_dir)
    dpedge = options.remote_dpedge
    facts = device(session, dpedge, folder)
    show_device(target, facts, console)
    check_device(facts, options, size, target, built)

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=stderr_console,
    ) as progress:
        task = progress.add_task(f"copying to {target}:{folder}", total=size)
        copied = [f.name for f in files if session.upload(f, folder / f.name, lambda n: progress.advance(task, n))]
    console.print(f"copied {', '.join(copied) or 'nothing (the device has these files already)'} to {target}:{folder}")

    remote = {f.name: folder / f.name for f in files}
    frames = next((remote[f.name] for f in files if f.name.endswith(".frames.npz")), None)
    done: dict = {"device": facts, "remote_dir": str(folder), "copied": copied}
    graphs = [f.name for f in files if f.suffix == ".onnx"]
    opened = {name: remote[name] for name in graphs}
    for name, engines in zip(graphs, built):  # --engine: the model's, then its dense twin's where copied
        check_engines(session, dpedge, remote[engines.path.name], engines.engines, "copied", model, console)
        opened[name] = remote[engines.path.name]
    if built:
        done["engines"] = {name: str(remote[engines.path.name]) for name, engines in zip(graphs, built)}
    if options.build_engine:
        for name in graphs:
            with stderr_console.status(
                f"building the TensorRT engine of {name} on {target.host} ({options.precision})"
            ):
                out = session.run(
                    [
                        dpedge,
                        "engine",
                        remote[name],
                        "--precision",
                        options.precision,
                        "--json",
                        *(["--frames", frames] if frames else []),
                    ],
                    f"building the engine of {name}",
                )
            result = last_json_line(out, f"`dpedge engine` on {target.host}")
            opened[name] = PurePosixPath(result["engine"])
            console.print(
                f"built {result['engine']} on {target.host}; checked against onnxruntime: {result['polygraphy']}"
            )
            check_engines(session, dpedge, opened[name], result.get("engines", []), "built", model, console)
        done["engines"] = {name: str(path) for name, path in opened.items()}
    if options.profile:
        report = folder / f"{model.stem}.report"
        with stderr_console.status(f"profiling {model.name} on {target.host} ({options.backend})"):
            profiled = (
                opened[model.name] if options.backend == "trt" else remote[model.name]
            )  # ort runs the ONNX, engines or not
            session.run(
                [
                    dpedge,
                    "profile",
                    profiled,
                    "--backend",
                    options.backend,
                    "--frames",
                    frames,
                    "--samples",
                    str(options.samples),
                    "--report",
                    report,
                    "--power",
                    options.power,
                    *(["--power-mode", options.power_mode] if options.power_mode else []),
                ],
                f"profiling {model.name}",
            )
        local = options.report or model.with_name(f"report-{target.host}")
        fetch(session, report, local)
        done["report"] = str(local)
        show_report(local, target, console)
    return done


def device(session: Session, dpedge: str, folder: PurePosixPath) -> dict:
    with stderr_console.status(f"checking {session.target}"):
        try:
            out = session.run([dpedge, "device", "--json", "--disk", folder], "dpedge device")
        except RemoteError as error:
            if "command not found" in str(error) or "exit 127" in str(error):
                raise RemoteError(
                    f"dpedge is not installed on {session.target.host} (or not on the PATH of a non-interactive ssh "
                    "login): run jetson/setup.sh there, or pass --remote-dpedge PATH"
                ) from None
            raise
    return last_json_line(out, f"`{dpedge} device --json` on {session.target.host}")


def last_json_line(out: str, what: str) -> dict:
    """The JSON object a remote dpedge command printed last (its tables come before)."""
    try:
        found = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = None
    if not isinstance(found, dict):
        raise RemoteError(f"{what} printed no JSON report: is the device's dpedge as recent as this one?")
    return found


def show_device(target: Target, facts: dict, console: Console) -> None:
    table = Table(title=f"{target}", show_header=False)
    free = facts.get("free_bytes")
    for name, value in (
        ("dpedge", facts.get("dpedge")),
        ("L4T / JetPack", facts.get("l4t") and f"R{facts['l4t']} / JetPack {facts['jetpack']}"),
        ("CUDA", facts.get("cuda")),
        ("TensorRT", facts.get("tensorrt")),
        ("onnxruntime", facts.get("onnxruntime")),
        ("power mode", facts.get("power_mode")),
        ("free disk", None if free is None else f"{free / 2**30:.1f} GiB at {facts['disk']}"),
    ):
        table.add_row(name, "not found" if value is None else str(value))
    console.print(table)


def check_device(
    facts: dict, options: DeployOptions, size: int, target: Target, built: list[BuiltEngines] = ()
) -> None:
    """Refuse, before copying, a device that cannot do what was asked, or whose TensorRT is
    not the one the engines to copy (`built`) were built with."""
    needs_trt = options.build_engine or options.engine is not None or (options.profile and options.backend == "trt")
    if needs_trt and facts.get("tensorrt") is None:
        raise ConfigError(
            f"{target.host} has no TensorRT for {'--engine' if options.engine else '--build-engine'}: install JetPack's TensorRT (JetPack 5.1: 8.5, 6.x: 8.6/10.3), "
            "or profile on --backend ort"
        )
    l4t = facts.get("l4t")
    if needs_trt and l4t is not None and l4t.split(".")[0] not in SUPPORTED_L4T_MAJORS:
        raise ConfigError(
            f"{target.host} runs L4T R{l4t} (JetPack {facts.get('jetpack')}); dpedge supports JetPack 5.1 and 6.x (L4T R35, R36)"
        )
    for engines in built:
        if facts.get("tensorrt") is not None and short_version(facts["tensorrt"]) != short_version(engines.trt_version):
            raise ConfigError(
                f"{engines.metadata.name} was built with TensorRT {engines.trt_version}, and {target.host} has TensorRT "
                f"{facts['tensorrt']}: engines do not carry over between TensorRT versions; build them there with "
                "--build-engine instead of --engine"
            )
    if options.profile and options.backend == "ort" and facts.get("onnxruntime") is None:
        raise ConfigError(f"{target.host} has no onnxruntime for --backend ort: pip install onnxruntime there")
    free = facts.get("free_bytes")
    if isinstance(free, int) and free < size + DISK_MARGIN:
        raise ConfigError(
            f"{target.host} has {free / 2**20:.0f} MiB free at {facts.get('disk')}; the model needs {(size + DISK_MARGIN) / 2**20:.0f} MiB"
        )


def fetch(session: Session, remote: PurePosixPath, local: Path) -> None:
    """The report folder into `local`, replacing an older one only once the new one is complete."""
    local.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{local.name}.", dir=local.parent))
    try:
        session.fetch_folder(remote, staging / "report")
        old = local.with_name(f".{local.name}.old")
        if local.exists():
            shutil.rmtree(old, ignore_errors=True)
            local.rename(old)
        (staging / "report").rename(local)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def show_report(local: Path, target: Target, console: Console) -> None:
    summary = json.loads((local / "report.json").read_text())
    latency = summary["latency"]
    sparse, dense = latency["sparse"], latency["dense"]
    console.print(
        f"on {target.host} ({summary['backend']['backend']}, {latency['label']}): {sparse['p50']:.3f} ms median against the dense "
        f"twin's {dense['p50']:.3f} ms ({latency['speedup']:.2f}×); report in {local}",
        soft_wrap=True,
    )
    if "power" in summary:
        power = summary["power"]
        dynamic = (
            ""
            if power["sparse"]["dynamic_energy_mj"] is None
            else f", {power['sparse']['dynamic_energy_mj']:.4f} mJ above idle"
        )
        console.print(
            f"energy per inference on {target.host} (MEASURED by {power['meter']}): {power['sparse']['energy_mj']:.4f} mJ{dynamic}; "
            f"dense twin / pruned {power['energy_ratio']:.2f}×",
            soft_wrap=True,
        )
