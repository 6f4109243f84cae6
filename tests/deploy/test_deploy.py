"""`dpedge deploy` against a real OpenSSH server started here on 127.0.0.1 (a generated
host key and user key; the "device" is this machine, profiling on onnxruntime since there
is no GPU): the report comes back; hostile hosts and folders are refused before anything
runs; unreachable hosts, wrong keys, unknown host keys and a missing dpedge end in one
line; a connection killed mid-copy leaves no complete-looking file."""

from __future__ import annotations

import getpass
import hashlib
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

from dynaprune_edge.deploy.ssh import RemoteError, Session, Target

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
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            f"PidFile {folder / 'sshd.pid'}", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", f"AllowUsers {USER}",
            "Subsystem sftp internal-sftp", ""]))  # scp speaks SFTP, as Jetson's stock sshd offers
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(folder / "sshd.log", "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()}")

    def target(self, **options) -> Target:
        return Target.parse(f"{USER}@127.0.0.1", port=self.port, identity=self.key, known_hosts=self.known_hosts, **options)

    def options(self, identity: Path | None = None, known_hosts: Path | None = None) -> list[str]:
        return ["--host", f"{USER}@127.0.0.1", "--port", str(self.port), "--identity", str(identity or self.key),
                "--known-hosts", str(known_hosts or self.known_hosts)]

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


def dpedge(*args):
    return subprocess.run([sys.executable, "-m", "dynaprune_edge", *map(str, args)], capture_output=True, text=True, timeout=600)


def assert_one_line_error(result, *expected: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and lines and lines[-1].startswith("error: "), result.stderr
    assert all(text in lines[-1] for text in expected), lines[-1]


def test_deploy_copies_profiles_on_the_device_and_fetches_the_report(server, model, tmp_path):
    device = tmp_path / "device" / "dpedge-deploy"
    report = tmp_path / "report"
    result = dpedge("deploy", model, *server.options(), "--remote-dir", device, "--profile", "--backend", "ort",
                    "--samples", "8", "--remote-dpedge", DPEDGE, "--report", report)
    assert result.returncode == 0, result.stderr
    for name in ("model.onnx", "model.dpedge.json", "model.dense.onnx", "model.dense.dpedge.json", "model.frames.npz"):
        assert (device / name).read_bytes() == (model.parent / name).read_bytes(), name
    assert not list(device.glob(".*.partial"))
    fetched = json.loads((report / "report.json").read_text())
    assert fetched["backend"]["backend"] == "ort" and fetched["latency"]["kind"] == "measured" and len(fetched["samples"]) == 8
    assert "validation windows of taxibj (synthetic)" in fetched["data"]
    assert (report / "report.md").is_file()
    assert "on 127.0.0.1 (ort, " in result.stdout and "median against the dense twin's" in result.stdout

    again = dpedge("deploy", model, *server.options(), "--remote-dir", device, "--remote-dpedge", DPEDGE)
    assert again.returncode == 0, again.stderr
    assert "copied nothing (the device has these files already)" in again.stdout


def test_deploy_brings_back_the_power_the_device_measured(server, model, tmp_path, fake_tegrastats, tegrastats_line):
    """The device's dpedge finds a tegrastats (a stand-in printing lines recorded on an AGX
    Orin) through a wrapper that puts it on PATH, as JetPack's /usr/bin does."""
    meter = fake_tegrastats(tmp_path / "bin", [tegrastats_line("agx_orin_jetpack5_root.txt"), tegrastats_line("agx_orin_jetpack7.txt")],
                            stale=tegrastats_line("agx_orin_jetpack5_root.txt"))
    wrapper = tmp_path / "dpedge-on-a-jetson"
    wrapper.write_text(f'#!/bin/sh\nPATH="{meter}:$PATH" exec "{DPEDGE}" "$@"\n')
    wrapper.chmod(0o755)
    report = tmp_path / "report"
    result = dpedge("deploy", model, *server.options(), "--remote-dir", tmp_path / "device", "--profile", "--backend", "ort",
                    "--samples", "4", "--power", "tegrastats", "--remote-dpedge", wrapper, "--report", report)
    assert result.returncode == 0, result.stderr
    power = json.loads((report / "report.json").read_text())["power"]
    assert power["idle"]["mean_mw"] == 7009 and power["sparse"]["mean_mw"] == 13907
    assert (report / "power_trace.png").is_file()
    assert "energy per inference on 127.0.0.1 (MEASURED by tegrastats)" in result.stdout and "mJ above idle" in result.stdout


@pytest.mark.parametrize("option, value, message", [
    ("--host", "x;touch {marker}@127.0.0.1", "--host must be USER@HOST"),
    ("--host", "root@x;touch {marker}", "is not a host name or IP address"),
    ("--host", "root@-oProxyCommand=touch {marker}", "is not a host name or IP address"),
    ("--host", "-oProxyCommand=touch {marker}", "--host must be USER@HOST"),
    ("--remote-dir", "../../{marker}", "--remote-dir must not contain '..'"),
    ("--remote-dir", "a/../b", "--remote-dir must not contain '..'"),
    ("--remote-dir", "x$(touch {marker})", "--remote-dir must be a plain path"),
    ("--remote-dir", "-rf", "--remote-dir must be a plain path"),
    ("--remote-dpedge", "dpedge;touch {marker}", "--remote-dpedge must be a plain path"),
])
def test_hostile_hosts_and_folders_are_refused_before_anything_runs(server, model, tmp_path, option, value, message):
    marker = tmp_path / "pwned"
    options = {"--host": f"{USER}@127.0.0.1", "--remote-dir": str(tmp_path / "device"), "--remote-dpedge": str(DPEDGE)}
    options[option] = value.format(marker=marker)
    sent = [word for pair in options.items() for word in pair]
    result = dpedge("deploy", model, *sent, "--port", server.port, "--identity", server.key, "--known-hosts", server.known_hosts)
    assert_one_line_error(result, message)
    assert not marker.exists() and not (tmp_path / "device").exists() and not (model.parent / "report-127.0.0.1").exists()


def test_unreachable_hosts_wrong_keys_unknown_host_keys_and_a_missing_dpedge_end_in_one_line(server, model, tmp_path):
    device = str(tmp_path / "device")
    base = ["--remote-dir", device, "--remote-dpedge", DPEDGE]
    closed = dpedge("deploy", model, "--host", f"{USER}@127.0.0.1", "--port", free_port(), "--identity", server.key, *base)
    assert_one_line_error(closed, "cannot reach", "Connection refused")
    stranger = keygen(tmp_path / "stranger")
    refused = dpedge("deploy", model, *server.options(identity=stranger), *base)
    assert_one_line_error(refused, "refused the login", "--identity")
    (tmp_path / "empty_known_hosts").write_text("")
    unknown = dpedge("deploy", model, *server.options(known_hosts=tmp_path / "empty_known_hosts"), *base)
    assert_one_line_error(unknown, "host key is not in known_hosts", "--accept-new-host-key")
    missing = dpedge("deploy", model, *server.options(), "--remote-dir", device, "--remote-dpedge", "/nonexistent/dpedge")
    assert_one_line_error(missing, "dpedge is not installed on 127.0.0.1", "jetson/setup.sh")
    no_trt = dpedge("deploy", model, *server.options(), *base, "--build-engine")
    assert_one_line_error(no_trt, "has no TensorRT for --build-engine")
    assert not Path(device).exists(), "nothing is copied to a device that failed its check"


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
