"""The device end of `dpedge deploy`, over the system's OpenSSH client (no transport of
our own): a checked target, remote commands with every word quoted, and copies that are
verified and renamed into place, so a dropped connection never leaves a complete-looking
file.

What reaches a shell: locally nothing (ssh and scp get argument lists); remotely one
command line that the device's login shell parses, built from words each passed through
`shlex.quote`. Before that, the user, host and remote folder must match strict patterns,
so a host such as `x;touch /tmp/p` or `-oProxyCommand=…` never reaches ssh at all. Host
keys are checked against known_hosts (ssh's StrictHostKeyChecking=yes) unless
`--accept-new-host-key` is given, which trusts a host seen for the first time only."""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dynaprune_edge.errors import ConfigError, DpedgeError
from dynaprune_edge.files import sha256_file

_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.IGNORECASE)
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*", re.IGNORECASE
)
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]", re.IGNORECASE)
_REMOTE_PATH = re.compile(r"[A-Za-z0-9._/+-]+")
CONNECT_SECONDS = 15
CHUNK = 1 << 20


class RemoteError(DpedgeError):
    """The device could not be reached, refused us, or a command on it failed."""


@dataclass(frozen=True)
class Target:
    """USER@HOST[:port] with the key and known_hosts to use; refused unless every part is
    plain (see the module doc)."""

    user: str
    host: str
    port: int = 22
    identity: Path | None = None
    known_hosts: Path | None = None  # default: ssh's own (~/.ssh/known_hosts)
    accept_new_host_key: bool = False

    @classmethod
    def parse(cls, destination: str, **options) -> Target:
        user, at, host = destination.rpartition("@")
        if not at or not _USER.fullmatch(user):
            raise ConfigError(
                f"--host must be USER@HOST with a plain user name (letters, digits, _ . -), got {destination!r}"
            )
        if not (_HOSTNAME.fullmatch(host) or _IPV6.fullmatch(host)):
            raise ConfigError(f"--host: {host!r} is not a host name or IP address")
        return cls(user, host.strip("[]"), **options)

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 1–65535, got {self.port}")
        for option, path in (("--identity", self.identity), ("--known-hosts", self.known_hosts)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{option} {path}: no such file")

    def __str__(self) -> str:
        return f"{self.user}@{self.host}"

    def options(self) -> list[str]:
        """What every ssh and scp call gets: no password prompts (BatchMode), host keys
        checked, a dead connection noticed within ~30 s."""
        checking = "accept-new" if self.accept_new_host_key else "yes"
        found = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"StrictHostKeyChecking={checking}",
            "-o",
            f"ConnectTimeout={CONNECT_SECONDS}",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
        ]
        if self.identity is not None:
            found += ["-o", "IdentitiesOnly=yes", "-i", str(self.identity)]
        if self.known_hosts is not None:
            found += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return found


def remote_path(path: str, option: str = "--remote-dir") -> PurePosixPath:
    """A path on the device given as `option`, refused unless plain: no `..`, no shell or
    option characters."""
    if not _REMOTE_PATH.fullmatch(path) or path.startswith("-"):
        raise ConfigError(
            f"{option} must be a plain path (letters, digits, . _ / + -, not starting with -), got {path!r}"
        )
    folder = PurePosixPath(path)
    if ".." in folder.parts:
        raise ConfigError(f"{option} must not contain '..', got {path!r}")
    return folder


def command_line(words: Sequence[str]) -> str:
    """One remote command line, each word quoted for a POSIX shell."""
    return " ".join(shlex.quote(str(word)) for word in words)


def last_line(stderr: str) -> str:
    """What a failed command said last (ssh and remote commands put the cause there)."""
    return next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no message")


def explain_ssh_failure(target: Target, stderr: str) -> str:
    """ssh's own failure (exit 255) in one line, with what to do about it."""
    said = last_line(stderr)
    if "Host key verification failed" in stderr or "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr:
        return (
            f"{target.host}'s host key is not in known_hosts or does not match it: check its fingerprint and add it "
            f"(ssh-keyscan -p {target.port} {target.host} >> ~/.ssh/known_hosts), or pass --accept-new-host-key for a first connection"
        )
    if "Permission denied" in stderr:
        return f"{target} refused the login ({said}): check --identity and the device's authorized_keys"
    return f"cannot reach {target}: {said}"


class Session:
    """Commands and copies on one target."""

    def __init__(self, target: Target, runner: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
        self.target = target
        self._run = runner

    def _ssh(self, remote: str) -> list[str]:
        return [
            "ssh",
            *self.target.options(),
            "-p",
            str(self.target.port),
            "--",
            f"{self.target.user}@{self.target.host}",
            remote,
        ]

    def run(self, words: Sequence[str], what: str, input: bytes | None = None, timeout: float | None = None) -> str:
        """`words` run on the device; its stdout, or a RemoteError naming `what` failed."""
        try:
            done = self._run(self._ssh(command_line(words)), input=input, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{what} on {self.target} did not finish within {timeout:.0f} s") from None
        except FileNotFoundError:
            raise RemoteError(
                "dpedge deploy uses the OpenSSH client, and `ssh` is not on PATH (Debian/Ubuntu: apt install openssh-client)"
            ) from None
        stderr = done.stderr.decode(errors="replace")
        if done.returncode == 255:
            raise RemoteError(explain_ssh_failure(self.target, stderr))
        if done.returncode != 0:
            said = last_line(stderr)
            if done.returncode == 127:
                said = f"command not found ({said})"
            raise RemoteError(f"{what} failed on {self.target} (exit {done.returncode}): {said}")
        return done.stdout.decode(errors="replace")

    def sha256(self, path: PurePosixPath) -> str | None:
        """The file's SHA-256 on the device, None where it does not exist."""
        out = self.run(["sh", "-c", 'if [ -f "$1" ]; then sha256sum "$1"; fi', "sh", str(path)], f"hashing {path}")
        return out.split()[0] if out.strip() else None

    def upload(self, local: Path, remote: PurePosixPath, advance: Callable[[int], None]) -> bool:
        """Copy `local` to `remote` unless an identical file is there already (False then).
        The bytes go to a hidden temporary name beside it, are hashed there and only then
        renamed into place: an interrupted copy leaves `.NAME.partial`, which the next run
        overwrites, never a file at `remote` that looks complete."""
        digest = sha256_file(local)
        if self.sha256(remote) == digest:
            advance(local.stat().st_size)
            return False
        partial = remote.with_name(f".{remote.name}.partial")
        process = subprocess.Popen(
            self._ssh(command_line(["sh", "-c", 'mkdir -p "$(dirname "$1")" && cat > "$1"', "sh", str(partial)])),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            with open(local, "rb") as file:
                for block in iter(lambda: file.read(CHUNK), b""):
                    process.stdin.write(block)
                    advance(len(block))
            process.stdin.close()
        except BrokenPipeError:
            pass  # the connection dropped: the exit status below says how
        stderr = process.stderr.read().decode(errors="replace")
        if process.wait() != 0:
            if process.returncode == 255:
                raise RemoteError(f"copying {local.name}: {explain_ssh_failure(self.target, stderr)}")
            raise RemoteError(
                f"copying {local.name} to {self.target} failed (exit {process.returncode}): {last_line(stderr)}"
            )
        if self.sha256(partial) != digest:
            raise RemoteError(
                f"{partial} on {self.target} does not hold what was sent (the connection or the disk lost bytes): run deploy again"
            )
        self.run(["mv", "-f", "--", str(partial), str(remote)], f"renaming {partial.name}")
        return True

    def fetch_folder(self, remote: PurePosixPath, local: Path) -> None:
        """scp -r of `remote` into the new folder `local` (which must not exist)."""
        command = [
            "scp",
            "-r",
            "-q",
            *self.target.options(),
            "-P",
            str(self.target.port),
            "--",
            f"{self.target.user}@{self.target.host}:{remote}",
            str(local),
        ]
        done = self._run(command, capture_output=True)
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace")
            why = (
                explain_ssh_failure(self.target, stderr)
                if done.returncode == 255
                else f"exit {done.returncode}: {last_line(stderr)}"
            )
            raise RemoteError(f"fetching {remote} from {self.target}: {why}")
