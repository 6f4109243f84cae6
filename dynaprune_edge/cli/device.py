"""`dpedge device`, `dpedge engine` and `dpedge deploy`: the commands of the device side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dynaprune_edge.cli.options import TwinBackbone, register_own_backbone
from dynaprune_edge.cli.show import console
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import check_writable


def device(
    disk: Annotated[
        Path, typer.Option(help="Report the free space for this folder (or its nearest existing parent).")
    ] = Path("."),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (what `dpedge deploy` reads).")
    ] = False,
) -> None:
    """What this machine offers dpedge: its version, L4T and JetPack, CUDA, TensorRT, onnxruntime, power mode and free disk."""
    from dynaprune_edge.runtime.jetson import device_facts

    facts = device_facts(disk)
    if as_json:
        print(json.dumps(facts))
        return
    for name, value in facts.items():
        console.print(f"{name}: {'not found' if value is None else value}", markup=False, highlight=False)


def engine(
    model: Annotated[
        Path,
        typer.Argument(
            help="An exported MODEL.onnx, its manifest beside it (with --check: an engine, its .engine.json, or a "
            ".bundle.json)."
        ),
    ],
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, fp16 or int8 (int8 is calibrated on --frames, or reuses the calibration cache beside the "
            "model)."
        ),
    ] = "fp16",
    frames: Annotated[
        Path | None,
        typer.Option(
            help="A NAME.frames.npz of validation windows (`dpedge deploy` copies one): int8 calibration and the "
            "Polygraphy check's inputs."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="single: one engine of the whole graph; split: a pruned graph's bundle, one engine for the router and "
            "one per branch (TensorRT may run every branch of an If). Default: split for a pruned graph."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the engine's (or bundle's) path, each engine file with its SHA-256, and the "
            "check against onnxruntime.",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Build nothing: check the engine or bundle MODEL built earlier (what `dpedge deploy` runs on the "
            "device), refused in one line unless it was built for this GPU and TensorRT from the graph beside it and "
            "every engine file is the one its metadata lists (SHA-256).",
        ),
    ] = False,
) -> None:
    """Build the TensorRT engine of an exported model on this device, without torch (`dpedge export --trt` does the same from a model.pt); a pruned model's as a bundle of engines."""
    from dynaprune_edge.export.tensorrt.build import build_or_explain
    from dynaprune_edge.runtime.frames import load_frames
    from dynaprune_edge.runtime.manifest import read_manifest
    from dynaprune_edge.runtime.tensorrt import check_engine, engine_files

    if not model.is_file():
        raise ConfigError(f"{model}: no such file")
    if check:
        if frames is not None or layout is not None:
            raise ConfigError("--check builds nothing: --frames and --layout are options of a build")
        checked = check_engine(model)
        if as_json:
            print(json.dumps(checked))
            return
        console.print(
            f"{checked['engine']}: {len(checked['engines'])} engine file(s), each the one {checked['metadata']} lists, built for this "
            f"{checked['device']} with TensorRT {checked['tensorrt']} from the {checked['onnx']} beside it",
            markup=False,
            soft_wrap=True,
        )
        return
    manifest = read_manifest(model)
    calibration = None if frames is None else load_frames(frames, manifest)[0]
    outcome = build_or_explain(model, manifest, precision, calibration, None, layout=layout)
    if outcome.engine_path is None:
        raise ConfigError(
            f"no TensorRT engine built: {outcome.reason}"
        )  # the reason ends with the command for the device
    if as_json:
        _, _, metadata, engines = engine_files(outcome.engine_path)
        print(
            json.dumps(
                {
                    "engine": str(outcome.engine_path),
                    "metadata": metadata.name,
                    "engines": [vars(e) for e in engines],
                    "polygraphy": outcome.polygraphy,
                    "profile_command": outcome.command,
                }
            )
        )
        return
    console.print(f"wrote {outcome.engine_path}; checked against onnxruntime: {outcome.polygraphy}")
    console.print(f"profile it with: {outcome.command}", soft_wrap=True, markup=False)


def deploy(
    model: Annotated[
        Path,
        typer.Argument(
            help="An exported MODEL.onnx (its manifest, and its dense twin MODEL.dense.onnx or the model.pt to export "
            "it from, beside it)."
        ),
    ],
    host: Annotated[str, typer.Option(help="The device, USER@HOST (a host name or IP address; [v6] in brackets).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Its SSH port.")] = 22,
    identity: Annotated[
        Path | None, typer.Option(help="The private key to log in with (default: ssh's own choice).")
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(
            help="The known_hosts file to check the device's host key against (default: ssh's, ~/.ssh/known_hosts)."
        ),
    ] = None,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key",
            help="Trust the host key of a device seen for the first time (a changed key is still refused).",
        ),
    ] = False,
    remote_dir: Annotated[
        str, typer.Option(help="The folder on the device (relative paths are in the login's home).")
    ] = "dpedge-deploy",
    build_engine: Annotated[
        bool,
        typer.Option(
            "--build-engine",
            help="Build the TensorRT engines (model and dense twin) on the device: engines are not portable.",
        ),
    ] = False,
    engine: Annotated[
        Path | None,
        typer.Option(
            help="Copy this engine or bundle instead of building one on the device: an .engine (or its .engine.json) "
            "or a .bundle.json built from MODEL on an identical device (same GPU and TensorRT; e.g. fetched from the "
            "first Jetson of a fleet), with the dense twin's engine where it lies beside it. Every engine goes first, "
            "its metadata last; each is checked on the device by SHA-256, with the GPU and TensorRT it was built for."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(help="The engines' precision: fp32, fp16 or int8 (calibrated on the model's validation windows)."),
    ] = "fp16",
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Profile the model against its dense twin on the device and fetch the report."),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="--profile backend on the device: trt (the engines built), or ort (onnxruntime CPU: a device without "
            "TensorRT)."
        ),
    ] = "trt",
    power_mode: Annotated[
        str | None,
        typer.Option(
            help="The nvpmodel mode the Jetson must be in while profiling on trt (MAXN, 50W, 30W, 15W); checked there, "
            "never changed (jetson/clocks.sh sets it)."
        ),
    ] = None,
    power: Annotated[
        str,
        typer.Option(
            help="The profile's power meter on the device: auto, tegrastats, jtop or off (dpedge profile --power; an "
            "AGX Orin's tegrastats shows its rails to root only, jtop to anyone)."
        ),
    ] = "auto",
    report: Annotated[
        Path | None, typer.Option(help="Where the fetched report goes (default: beside the model, report-HOST).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Read the profile's validation windows from this copy of the data (default: what the manifest "
            "records; 'sample': the bundled one)."
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(min=1, max=100000, help="Validation windows to profile on (sent to the device in a frames file)."),
    ] = 64,
    remote_dpedge: Annotated[
        str,
        typer.Option(
            help="The dpedge command on the device (a path where it is not on a non-interactive login's PATH)."
        ),
    ] = "dpedge",
    backbone: TwinBackbone = None,
) -> None:
    """Deploy an exported model to a Jetson over SSH: check the device, copy, build the engines there (or copy engines built on an identical device), check them there, profile there, fetch the report."""
    from dynaprune_edge.deploy import DeployOptions
    from dynaprune_edge.deploy import deploy as run_deploy
    from dynaprune_edge.deploy.ssh import Target

    register_own_backbone(backbone)

    if report is not None:
        check_writable(report, "--report", folder=True)
    target = Target.parse(
        host, port=port, identity=identity, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key
    )
    options = DeployOptions(
        remote_dir,
        build_engine,
        precision,
        profile,
        backend,
        power_mode,
        power,
        report,
        data,
        samples,
        remote_dpedge,
        engine=engine,
    )
    run_deploy(model, target, options, console)
