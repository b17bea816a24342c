"""A real OpenSSH server on 127.0.0.1 for the ssh server's e2e test: its own config, a throwaway
ed25519 host key and client key, and a dedicated unprivileged user (created once, if missing)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
USER = "cua-e2e-ssh"
CONTAINER_UID = 65532  # the ssh image's user, who must be able to read the mounted key
LISTEN_TIMEOUT = 15.0  # seconds for sshd to report that it listens
STOP_TIMEOUT = 5.0  # seconds for sshd to exit on SIGTERM before it is killed
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it


@dataclass
class SshHost:
    """A running sshd that lets `user` in with `client_key`; `work` is a folder `user` owns."""

    port: int
    user: str
    client_key: Path
    work: Path
    log: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    # A new account is locked ("!" in shadow), and sshd refuses locked accounts even for keys;
    # "*" means: no password can match, but the account is usable.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return pwd.getpwnam(name)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )


def _config(folder: Path, port: int, user: str) -> str:
    return "\n".join(
        [
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {folder / 'host_key'}",
            f"PidFile {folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}",
            "StrictModes no",  # the keys live under /tmp, which is world-writable
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AllowUsers {user}",
            "AcceptEnv AI_AGENT",  # ssh-mcp announces itself
            "",
        ]
    )


@contextmanager
def running_sshd() -> Iterator[SshHost]:
    """Start sshd with its own keys and config; stop it and remove every file at exit."""
    account = _ensure_user(USER)
    folder = Path(tempfile.mkdtemp(prefix="cua-e2e-sshd-"))
    process: subprocess.Popen[str] | None = None
    drain: threading.Thread | None = None
    try:
        folder.chmod(0o755)  # sshd reads authorized_keys as the user
        _keygen(folder / "host_key", "cua-e2e host")
        _keygen(folder / "client_key", "cua-e2e client")
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        (folder / "authorized_keys").chmod(0o644)
        key = folder / "client_key"
        os.chown(key, CONTAINER_UID, CONTAINER_UID)
        key.chmod(0o400)
        work = folder / "work"
        work.mkdir(mode=0o700)
        os.chown(work, account.pw_uid, account.pw_gid)
        port = _free_port()
        (folder / "sshd_config").write_text(_config(folder, port, USER))
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)

        host = SshHost(port, USER, key, work)
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        listening = threading.Event()
        drain = threading.Thread(
            target=_drain, args=(process, host.log, listening), name="sshd-log", daemon=True
        )
        drain.start()
        if not listening.wait(LISTEN_TIMEOUT) or process.poll() is not None:
            raise RuntimeError("sshd did not start:\n" + "\n".join(host.log))
        yield host
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if drain is not None:
                drain.join(STOP_TIMEOUT)  # its end of the pipe closes with sshd's last child
            if process.stderr is not None:
                process.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def _drain(process: subprocess.Popen[str], log: list[str], listening: threading.Event) -> None:
    """Keep sshd's stderr flowing into `log`; set `listening` once it reports its socket."""
    assert process.stderr is not None
    try:
        for line in process.stderr:
            log.append(line.rstrip())
            if line.startswith("Server listening on"):
                listening.set()
    except (OSError, ValueError):
        pass  # closed at teardown while a lingering session still held sshd's stderr
    listening.set()  # sshd ended: stop the wait at once (the caller checks poll())
