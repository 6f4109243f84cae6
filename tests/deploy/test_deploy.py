"""`dpedge deploy` against a real OpenSSH server started here on 127.0.0.1 (a generated
host key and user key; the "device" is this machine, profiling on onnxruntime since there
is no GPU): the report comes back; hostile hosts and folders are refused before anything
runs; unreachable hosts, wrong keys, unknown host keys and a missing dpedge end in one
line; a connection killed mid-copy leaves no complete-looking file."""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import pytest
from rich.console import Console

from dynaprune_edge.deploy.ssh import RemoteError, Session, Target
from dynaprune_edge.runtime.tensorrt import read_bundle

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
DPEDGE = Path(sys.executable).with_name("dpedge")
USER = getpass.getuser()


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        host_key, self.key = keygen(folder / "host_key"), keygen(folder / "user_key")
        (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {(folder / 'host_key.pub').read_text()}")
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                    f"PidFile {folder / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {USER}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )  # scp speaks SFTP, as Jetson's stock sshd offers
        log = open(folder / "sshd.log", "wb")  # noqa: SIM115 (sshd's log, written while it lives)
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()}")

    def target(self, **options) -> Target:
        return Target.parse(
            f"{USER}@127.0.0.1", port=self.port, identity=self.key, known_hosts=self.known_hosts, **options
        )

    def options(self, identity: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        return [
            "--host",
            f"{USER}@127.0.0.1",
            "--port",
            str(self.port),
            "--identity",
            str(identity or self.key),
            "--known-hosts",
            str(known_hosts or self.known_hosts),
        ]

    def drop_connections(self) -> None:
        """Kill the server's per-connection processes: every open connection drops."""
        for child in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split():
            os.kill(int(child), signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(SSHD).is_file():
        pytest.skip("no OpenSSH server here (Debian: apt install openssh-server; .ci/run installs it)")
    if os.geteuid() != 0 and not Path("/run/sshd").is_dir():
        pytest.skip("sshd needs its privilege-separation folder /run/sshd, which only root can make")
    Path("/run/sshd").mkdir(exist_ok=True)
    running = Server(tmp_path_factory.mktemp("sshd"))
    yield running
    running.process.terminate()
    running.process.wait(timeout=10)


def assert_one_line_error(result, *expected: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and lines and lines[-1].startswith("error: "), result.stderr
    assert all(text in lines[-1] for text in expected), lines[-1]


@pytest.mark.slow
def test_deploy_copies_profiles_on_the_device_and_fetches_the_report(dpedge, server, model, tmp_path):
    device = tmp_path / "device" / "dpedge-deploy"
    report = tmp_path / "report"
    result = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        device,
        "--profile",
        "--backend",
        "ort",
        "--samples",
        "8",
        "--remote-dpedge",
        DPEDGE,
        "--report",
        report,
    )
    assert result.returncode == 0, result.stderr
    for name in ("model.onnx", "model.dpedge.json", "model.dense.onnx", "model.dense.dpedge.json", "model.frames.npz"):
        assert (device / name).read_bytes() == (model.parent / name).read_bytes(), name
    assert not list(device.glob(".*.partial"))
    fetched = json.loads((report / "report.json").read_text())
    assert (
        fetched["backend"]["backend"] == "ort"
        and fetched["latency"]["kind"] == "measured"
        and len(fetched["samples"]) == 8
    )
    assert "validation windows of taxibj (synthetic)" in fetched["data"]
    assert (report / "report.md").is_file()
    assert "on 127.0.0.1 (ort, " in result.stdout and "median against the dense twin's" in result.stdout

    again = dpedge("deploy", model, *server.options(), "--remote-dir", device, "--remote-dpedge", DPEDGE)
    assert again.returncode == 0, again.stderr
    assert "copied nothing (the device has these files already)" in again.stdout


@pytest.mark.slow
def test_deploy_brings_back_the_power_the_device_measured(
    dpedge, server, model, tmp_path, fake_tegrastats, tegrastats_line
):
    """The device's dpedge finds a tegrastats (a stand-in printing lines recorded on an AGX
    Orin) through a wrapper that puts it on PATH, as JetPack's /usr/bin does."""
    meter = fake_tegrastats(
        tmp_path / "bin",
        [tegrastats_line("agx_orin_jetpack5_root.txt"), tegrastats_line("agx_orin_jetpack7.txt")],
        stale=tegrastats_line("agx_orin_jetpack5_root.txt"),
    )
    wrapper = tmp_path / "dpedge-on-a-jetson"
    wrapper.write_text(f'#!/bin/sh\nPATH="{meter}:$PATH" exec "{DPEDGE}" "$@"\n')
    wrapper.chmod(0o755)
    report = tmp_path / "report"
    result = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        tmp_path / "device",
        "--profile",
        "--backend",
        "ort",
        "--samples",
        "4",
        "--power",
        "tegrastats",
        "--remote-dpedge",
        wrapper,
        "--report",
        report,
    )
    assert result.returncode == 0, result.stderr
    power = json.loads((report / "report.json").read_text())["power"]
    assert power["idle"]["mean_mw"] == 7009 and power["sparse"]["mean_mw"] == 13907
    assert (report / "power_trace.png").is_file()
    assert (
        "energy per inference on 127.0.0.1 (MEASURED by tegrastats)" in result.stdout
        and "mJ above idle" in result.stdout
    )


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--host", "x;touch {marker}@127.0.0.1", "--host must be USER@HOST"),
        ("--host", "root@x;touch {marker}", "is not a host name or IP address"),
        ("--host", "root@-oProxyCommand=touch {marker}", "is not a host name or IP address"),
        ("--host", "-oProxyCommand=touch {marker}", "--host must be USER@HOST"),
        ("--remote-dir", "../../{marker}", "--remote-dir must not contain '..'"),
        ("--remote-dir", "a/../b", "--remote-dir must not contain '..'"),
        ("--remote-dir", "x$(touch {marker})", "--remote-dir must be a plain path"),
        ("--remote-dir", "-rf", "--remote-dir must be a plain path"),
        ("--remote-dpedge", "dpedge;touch {marker}", "--remote-dpedge must be a plain path"),
    ],
)
def test_hostile_hosts_and_folders_are_refused_before_anything_runs(
    dpedge, server, model, tmp_path, option, value, message
):
    marker = tmp_path / "pwned"
    options = {"--host": f"{USER}@127.0.0.1", "--remote-dir": str(tmp_path / "device"), "--remote-dpedge": str(DPEDGE)}
    options[option] = value.format(marker=marker)
    sent = [word for pair in options.items() for word in pair]
    result = dpedge(
        "deploy", model, *sent, "--port", server.port, "--identity", server.key, "--known-hosts", server.known_hosts
    )
    assert_one_line_error(result, message)
    assert (
        not marker.exists() and not (tmp_path / "device").exists() and not (model.parent / "report-127.0.0.1").exists()
    )


@pytest.mark.slow
def test_unreachable_hosts_wrong_keys_unknown_host_keys_and_a_missing_dpedge_end_in_one_line(
    dpedge, server, model, tmp_path
):
    device = str(tmp_path / "device")
    base = ["--remote-dir", device, "--remote-dpedge", DPEDGE]
    closed = dpedge(
        "deploy", model, "--host", f"{USER}@127.0.0.1", "--port", free_port(), "--identity", server.key, *base
    )
    assert_one_line_error(closed, "cannot reach", "Connection refused")
    stranger = keygen(tmp_path / "stranger")
    refused = dpedge("deploy", model, *server.options(identity=stranger), *base)
    assert_one_line_error(refused, "refused the login", "--identity")
    (tmp_path / "empty_known_hosts").write_text("")
    unknown = dpedge("deploy", model, *server.options(known_hosts=tmp_path / "empty_known_hosts"), *base)
    assert_one_line_error(unknown, "host key is not in known_hosts", "--accept-new-host-key")
    missing = dpedge(
        "deploy", model, *server.options(), "--remote-dir", device, "--remote-dpedge", "/nonexistent/dpedge"
    )
    assert_one_line_error(missing, "dpedge is not installed on 127.0.0.1", "jetson/setup.sh")
    no_trt = dpedge("deploy", model, *server.options(), *base, "--build-engine")
    assert_one_line_error(no_trt, "has no TensorRT for --build-engine")
    assert not Path(device).exists(), "nothing is copied to a device that failed its check"


@pytest.mark.slow
def test_a_copy_whose_connection_drops_leaves_no_complete_looking_file_and_a_rerun_completes_it(server, tmp_path):
    local = tmp_path / "big.onnx"
    local.write_bytes(os.urandom(48 << 20))
    remote = PurePosixPath(tmp_path / "device" / "big.onnx")
    session = Session(server.target())
    sent = []

    def drop_after_8_mib(n: int) -> None:
        sent.append(n)
        if sum(sent) >= 8 << 20 and len(sent) == 8:
            server.drop_connections()

    with pytest.raises(RemoteError, match="copying big.onnx"):
        session.upload(local, remote, drop_after_8_mib)
    assert not Path(remote).exists()
    assert session.upload(local, remote, lambda n: None) is True
    assert hashlib.sha256(Path(remote).read_bytes()).hexdigest() == hashlib.sha256(local.read_bytes()).hexdigest()
    assert not Path(remote).with_name(".big.onnx.partial").exists()
    assert session.upload(local, remote, lambda n: None) is False, "an identical file is not copied again"


# --- engines: built on the device, or copied from an identical one (--engine) -------------

TESTS = Path(__file__).parents[1]
BUNDLE, TWIN_ENGINE = "model.orin.trt8.5.2.fp16.bundle.json", "model.dense.orin.trt8.5.2.fp16.engine"


def jetson(path: Path, build: str, version: str = "8.5.2.2", gpu: str = "Orin", spoil: str | None = None) -> Path:
    """The dpedge of a Jetson at `path`: this dpedge with tests/runtime/test_tensorrt_bundle.py's
    TensorRT and pycuda stand-ins (TensorRT `version`, the GPU `gpu`), whose engines run
    their graphs on onnxruntime; every engine it builds but a bundle's router is marked with
    `build` (two devices' builds differ, as TensorRT's tactic choices make them). `spoil`: a
    role whose engine file `dpedge engine` damages after building it (a disk fault between
    the build and deploy's check)."""
    path.write_text(f"""#!{sys.executable}
import pathlib, sys, types
sys.path.insert(0, {str(TESTS.parent)!r})
from tests.trt_stand_ins import install_stand_ins
trt = install_stand_ins("runtime/test_tensorrt_bundle.py", {version!r}, {build.encode()!r})
def parse_from_file(self, path):  # the dense twin: one engine, parsed from its file
    return self.parse(pathlib.Path(path).read_bytes())
trt.OnnxParser.parse_from_file = parse_from_file
device = types.SimpleNamespace(name=lambda: {gpu!r}, compute_capability=lambda: (8, 7))
sys.modules["pycuda.driver"].Context = types.SimpleNamespace(get_device=lambda: device)
arguments = sys.argv[1:]
try:
    from dynaprune_edge.cli import main
    main()
finally:
    if {spoil!r} and arguments[0] == "engine" and "--check" not in arguments:
        for engine in pathlib.Path(arguments[1]).parent.glob("*.{spoil}.*.engine"):
            engine.write_bytes(engine.read_bytes() + b"!")
""")
    path.chmod(0o755)
    return path


def check_there(dpedge_path: Path, engine: Path) -> dict:
    """`dpedge engine ENGINE --check --json` run by the device's dpedge, as deploy runs it."""
    result = subprocess.run(
        [str(dpedge_path), "engine", str(engine), "--check", "--json"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def listing(meta) -> list[dict]:
    return [{"role": e.role, "file": e.file, "sha256": e.sha256} for e in meta.engines]


def holding_the_model(folder: Path, model: Path) -> Path:
    """`folder` (a device's --remote-dir) holding the model, its dense twin and their
    manifests already, as an earlier deploy leaves them: deploy does not copy them again
    (each SSH connection takes a third of a second here)."""
    from dynaprune_edge.profile import dense_twin
    from dynaprune_edge.runtime.manifest import read_manifest

    dense_twin(
        model, model, read_manifest(model), log=lambda line: None
    )  # exported from model.pt beside it, as deploy does, once
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model.dpedge.json", "model.dense.onnx", "model.dense.dpedge.json"):
        shutil.copy(model.with_name(name), folder / name)
    return folder


@pytest.fixture(scope="module")
def first_jetson(dpedge, server, model, tmp_path_factory) -> Path:
    """The folder of a deploy --build-engine onto a first Jetson (its dpedge: `jetson`),
    holding the output of that deploy in deploy.out."""
    folder = tmp_path_factory.mktemp("jetson-1")
    device = holding_the_model(folder / "dpedge-deploy", model)  # copying the model: the tests above
    result = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        device,
        "--remote-dpedge",
        jetson(folder / "dpedge", " on jetson-1"),
        "--build-engine",
    )
    assert result.returncode == 0, result.stderr
    (device / "deploy.out").write_text(result.stdout)
    return device


@pytest.mark.slow
def test_deploy_builds_a_bundle_on_the_device_and_checks_every_engine_there(
    dpedge, first_jetson, server, model, tmp_path
):
    meta = read_bundle(first_jetson / BUNDLE)
    out = (first_jetson / "deploy.out").read_text()
    engines = f"{len(meta.engines)} engines (router, {len(meta.branches)} branches)"
    assert len(meta.branches) > 1 and all((first_jetson / e.file).is_file() for e in meta.engines)
    assert (
        f"bundle {first_jetson / BUNDLE} on 127.0.0.1: {engines}, each checked there by SHA-256, built for its Orin with TensorRT 8.5.2.2"
        in out
    )
    assert f"engine {first_jetson / TWIN_ENGINE} on 127.0.0.1: 1 engine, each checked there by SHA-256" in out

    spoiled = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        holding_the_model(tmp_path / "device", model),
        "--build-engine",
        "--remote-dpedge",
        jetson(tmp_path / "dpedge", " on a faulty disk", spoil="branch1"),
    )
    assert_one_line_error(
        spoiled,
        f"checking {BUNDLE} failed on",
        "is not the branch1 engine",
        "(its SHA-256 differs)",
        "build the engines on 127.0.0.1 with dpedge deploy model.onnx",
        "--build-engine",
    )


@pytest.mark.slow
def test_deploy_copies_a_bundle_built_on_an_identical_device_engines_first_and_a_cut_copy_leaves_the_old_bundle(
    first_jetson, server, model, tmp_path, monkeypatch
):
    """A fleet: the bundle (and the dense twin's engine) built on the first Jetson goes to a
    second one with --engine, which holds a bundle of its own build of the same graph. A copy
    cut short after two of the new engines leaves the second Jetson's bundle whole (its
    metadata, copied last, still names its own engines); run again, the copy completes, and
    the device checks every engine by SHA-256."""
    from dynaprune_edge.deploy import DeployOptions, deploy

    second = holding_the_model(tmp_path / "jetson-2", model)
    second_dpedge = jetson(tmp_path / "dpedge", " on jetson-2")
    built = subprocess.run(
        [str(second_dpedge), "engine", str(second / "model.onnx")], capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    own, copied = read_bundle(second / BUNDLE), read_bundle(first_jetson / BUNDLE)
    assert own.branches != copied.branches, "the two Jetsons' builds are the same files"

    uploads, cut = [], copied.branches[1].file
    upload = Session.upload

    def recorded(self, local, remote, advance):
        if local.name == cut:
            raise RemoteError(f"copying {local.name}: cannot reach {self.target}: Connection reset by peer")
        uploads.append(local.name)
        return upload(self, local, remote, advance)

    monkeypatch.setattr(Session, "upload", recorded)
    options = DeployOptions(remote_dir=str(second), remote_dpedge=str(second_dpedge), engine=first_jetson / BUNDLE)
    output = io.StringIO()
    with pytest.raises(RemoteError, match=f"copying {cut}"):
        deploy(model, server.target(), options, Console(file=output, width=300))
    assert uploads[-1] == copied.branches[0].file and read_bundle(second / BUNDLE) == own
    assert check_there(second_dpedge, second / BUNDLE)["engines"] == listing(own), (
        "the cut copy left the device's own bundle whole"
    )

    uploads.clear()
    cut = None
    done = deploy(model, server.target(), options, Console(file=output, width=300))
    bundle_files = [e.file for e in copied.engines]
    assert uploads[uploads.index(bundle_files[0]) :] == [*bundle_files, BUNDLE, TWIN_ENGINE, TWIN_ENGINE + ".json"], (
        "engines first, metadata last"
    )
    assert read_bundle(second / BUNDLE) == copied and all(
        (second / f).read_bytes() == (first_jetson / f).read_bytes() for f in bundle_files
    )
    assert check_there(second_dpedge, second / BUNDLE)["engines"] == listing(copied)
    assert done["engines"] == {"model.onnx": str(second / BUNDLE), "model.dense.onnx": str(second / TWIN_ENGINE)}
    engines = f"{len(copied.engines)} engines (router, {len(copied.branches)} branches)"
    assert f"bundle {second / BUNDLE} on 127.0.0.1: {engines}, each checked there by SHA-256" in output.getvalue()


@pytest.mark.slow
def test_engines_for_another_tensorrt_or_gpu_or_not_whole_are_refused_in_one_line_naming_the_rebuild(
    dpedge, first_jetson, server, model, tmp_path
):
    bundle = first_jetson / BUNDLE
    newer = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        tmp_path / "newer",
        "--engine",
        bundle,
        "--remote-dpedge",
        jetson(tmp_path / "dpedge-10", "", version="10.3.0"),
    )
    assert_one_line_error(
        newer, f"{BUNDLE} was built with TensorRT 8.5.2.2, and 127.0.0.1 has TensorRT 10.3.0", "--build-engine"
    )
    assert not (tmp_path / "newer").exists(), (
        "nothing is copied to a device whose TensorRT the engines were not built with"
    )

    shutil.copytree(
        first_jetson, tmp_path / "nano"
    )  # the files are there already (so not copied again): the device's check refuses them
    other_gpu = dpedge(
        "deploy",
        model,
        *server.options(),
        "--remote-dir",
        tmp_path / "nano",
        "--engine",
        bundle,
        "--remote-dpedge",
        jetson(tmp_path / "dpedge-nano", "", gpu="Orin Nano"),
    )
    assert_one_line_error(
        other_gpu,
        f"{BUNDLE} was built for Orin (compute 8.7) with TensorRT 8.5.2.2, but this machine has Orin Nano",
        "build the engines on 127.0.0.1 with dpedge deploy model.onnx",
        "--build-engine",
    )

    both = dpedge("deploy", model, "--host", "nvidia@orin.local", "--engine", bundle, "--build-engine")
    assert_one_line_error(
        both, "--engine copies engines built on an identical device, --build-engine builds them on this one"
    )
    partial = tmp_path / "partial"
    shutil.copytree(first_jetson, partial)
    (partial / read_bundle(bundle).branches[0].file).unlink()
    missing = dpedge(
        "deploy", model, "--host", "nvidia@orin.local", "--engine", partial / BUNDLE
    )  # refused before connecting
    assert_one_line_error(missing, "which is not beside it: copy the whole bundle")
