"""Start, watch and stop benchmark targets (Vigil and its peers) on free 127.0.0.1 ports.

Shared by the benchmarks under `bench/`.  Every server is started in its own session (process
group) with a fresh temporary data directory, and `running()` guarantees that the group is
stopped (SIGTERM, then SIGKILL) and the directory removed when the block ends, also on errors
and Ctrl-C.  `install_sigterm_handler()` turns SIGTERM into `KeyboardInterrupt` so that a
benchmark killed with SIGTERM cleans up the same way.

    with running("prometheus") as peer:
        httpx.post(peer.url + "/api/v1/write", ...)
        ProcessTree(peer.pid).cpu_seconds()

Kinds: `vigil` (`<repo>/.venv/bin/vigil server`, or `python -m vigil server` with `<repo>/src`
first on the path where the checkout has no venv), `prometheus` (Debian's 2.42, with the
remote-write receiver and the admin API) and `victoria-metrics` (Debian's 1.79 single node).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
KINDS = ("vigil", "prometheus", "victoria-metrics")


class PeerError(RuntimeError):
    """A target could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_sigterm_handler() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, so `finally` blocks run."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _handler)


@dataclass
class Peer:
    """A started (or externally running) target."""

    kind: str
    url: str
    pid: int | None
    data_dir: Path | None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's combined stdout/stderr, for error messages."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class _Spec:
    argv: list[str]
    ready_paths: tuple[str, ...]
    binary: str


def _vigil_binary() -> Path:
    return REPO / ".venv" / "bin" / "vigil"


def _vigil_argv() -> list[str]:
    """The checkout's own `vigil`: its venv's entry point, or (a worktree without a venv) the
    interpreter running the benchmark with `-m vigil` and this checkout's `src` first on the path
    (see `_vigil_env`)."""
    binary = _vigil_binary()
    return [str(binary)] if binary.exists() else [sys.executable, "-m", "vigil"]


def _vigil_env() -> dict[str, str] | None:
    if _vigil_binary().exists():
        return None
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + (os.pathsep + path if path else "")}


def _spec(kind: str, port: int, data_dir: Path, work_dir: Path) -> _Spec:
    listen = f"127.0.0.1:{port}"
    if kind == "vigil":
        argv = _vigil_argv()
        argv += ["server", "--listen", listen, "--data-dir", str(data_dir)]
        return _Spec(argv, ("/-/ready",), argv[0])
    if kind == "prometheus":
        config = work_dir / "prometheus.yml"
        config.write_text("# empty: no scrape targets, remote-write receiver only\n")
        return _Spec(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address={listen}",
                "--web.enable-remote-write-receiver",
                "--web.enable-admin-api",
                "--log.level=warn",
            ],
            ("/-/ready",),
            "prometheus",
        )
    if kind == "victoria-metrics":
        return _Spec(
            [
                "victoria-metrics",
                f"-storageDataPath={data_dir}",
                f"-httpListenAddr={listen}",
                "-loggerLevel=WARN",
            ],
            ("/health",),
            "victoria-metrics",
        )
    raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")


def _wait_ready(peer: Peer, paths: tuple[str, ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if peer.process is not None and peer.process.poll() is not None:
                tail = peer.log_tail()
                last_line = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "no output")
                raise PeerError(
                    f"{peer.kind} exited with code {peer.process.returncode} before it was ready "
                    f"({last_line.strip()})\nlog tail:\n{tail}"
                )
            for path in paths:
                try:
                    r = client.get(peer.url + path)
                except httpx.HTTPError as e:
                    last = f"{path}: {type(e).__name__}"
                    continue
                if r.status_code == 200:
                    return
                last = f"{path}: HTTP {r.status_code}"
            time.sleep(0.1)
    raise PeerError(f"{peer.kind} at {peer.url} not ready after {timeout:.0f} s ({last})\nlog tail:\n"
                    f"{peer.log_tail()}")


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the benchmark dies without cleaning up (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        # The leader is gone; still reap anything left in its group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(kind: str, *, ready_timeout: float = 60.0, keep: bool = False, tmp_dir: Path | None = None,
            extra_args: list[str] | None = None) -> Iterator[Peer]:
    """Start `kind` on a free 127.0.0.1 port in a fresh temp dir; stop it and clean up on exit.

    `tmp_dir` is where the temp dir is made (default: the system's); `extra_args` go to the server.
    """
    work_dir = Path(tempfile.mkdtemp(prefix=f"vigil-bench-{kind}-", dir=tmp_dir))
    data_dir = work_dir / "data"
    data_dir.mkdir()
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        spec = _spec(kind, port, data_dir, work_dir)
        if kind != "vigil" and shutil.which(spec.binary) is None:
            raise PeerError(f"{spec.binary} is not installed (apt-get install {kind})")
        argv = spec.argv + (extra_args or [])
        log_path = work_dir / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=work_dir, start_new_session=True, preexec_fn=_die_with_parent,
                env=_vigil_env() if kind == "vigil" else None,
            )
        peer = Peer(kind, f"http://127.0.0.1:{port}", proc.pid, data_dir, log_path, proc)
        _wait_ready(peer, spec.ready_paths, ready_timeout)
        yield peer
    finally:
        if proc is not None:
            stop_process(proc)
        if keep:
            print(f"# kept {kind} work dir {work_dir}", flush=True)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


# --- measuring a server process ----------------------------------------------------------------


class ProcessTree:
    """CPU and RSS of a process and all its descendants (psutil)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def _members(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        """user+sys of the live tree, plus children that already exited and were reaped."""
        total = 0.0
        for i, p in enumerate(self._members()):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                t = p.cpu_times()
                total += t.user + t.system
                if i == 0:
                    total += t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for p in self._members():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += p.memory_info().rss
        return total

    def root_rss_bytes(self) -> int:
        """RSS of the root process alone (without children such as journalctl or apt-get)."""
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            return int(self.root.memory_info().rss)
        return 0

    def child_names(self) -> list[str]:
        out = []
        for p in self._members()[1:]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                out.append(p.name())
        return out

    def hwm_bytes(self) -> int:
        """The kernel's lifetime peak RSS of the root process (VmHWM), 0 if unavailable."""
        try:
            with open(f"/proc/{self.root.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


@dataclass
class RssSampler:
    """Samples the RSS of a process tree every `interval` s in a background thread; keeps the peak."""

    tree: ProcessTree
    interval: float = 0.1
    peak: int = 0  # the whole tree
    peak_root: int = 0  # the root process alone
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> None:
        self.peak = max(self.peak, self.tree.rss_bytes())
        self.peak_root = max(self.peak_root, self.tree.root_rss_bytes())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()


def dir_bytes(path: Path, exclude: Callable[[Path], bool] | None = None) -> int:
    """Apparent size of the regular files under `path`, each inode counted once (hard links)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        if exclude is not None:
            dirs[:] = [d for d in dirs if not exclude(Path(root) / d)]
        for name in files:
            p = Path(root) / name
            if exclude is not None and exclude(p):
                continue
            try:
                st = p.lstat()
            except FileNotFoundError:  # removed by a merge while we walk
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
