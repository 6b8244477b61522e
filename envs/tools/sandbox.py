"""Run untrusted Python in a sandbox: own namespaces, a private read-only root, no network, rlimits,
a wall-clock kill. See the README ("What the Python sandbox protects") for exactly what it stops."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

CHILD = Path(__file__).with_name("sandbox_child.py")
TEMP_PREFIX = "turngym-sandbox-"  # then the owner's pid: a dir whose owner is dead is stale


class SandboxUnavailableError(RuntimeError):
    """This machine cannot build the sandbox (no namespaces, not Linux, ...)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandboxed run."""

    cpu_seconds: int = 2
    """RLIMIT_CPU: CPU time before the kernel kills the process (SIGKILL)."""
    wall_seconds: float = 5.0
    """Wall-clock time before the whole process group (and with it the PID namespace) is killed."""
    memory_mb: int = 512
    """RLIMIT_AS: address space per process; allocations past it raise MemoryError."""
    max_processes: int = 16
    """RLIMIT_NPROC: processes and threads of the sandbox user (stops fork bombs)."""
    file_size_mb: int = 1
    """RLIMIT_FSIZE: largest file the code may write, stdout and stderr included."""
    disk_mb: int = 16
    """Size of the tmpfs that holds /work and /tmp."""
    open_files: int = 64
    """RLIMIT_NOFILE."""
    output_chars: int = 2000
    """stdout and stderr are each cut to this many characters in the result."""


@dataclass(frozen=True)
class SandboxResult:
    """What one sandboxed run did."""

    exit_code: int  # the process's exit status; 128 + N when killed by signal N
    stdout: str
    stderr: str
    timed_out: bool  # killed by the wall-clock limit
    truncated: bool  # stdout or stderr was cut to `output_chars`

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self, limits: SandboxLimits) -> str:
        """The result as a tool observation."""
        if self.timed_out:
            status = f"killed: wall-clock limit of {limits.wall_seconds:g} s reached"
        elif self.exit_code > 128:
            name = signal.Signals(self.exit_code - 128).name if self.exit_code - 128 < 65 else "?"
            status = f"killed by {name} (CPU-time limit {limits.cpu_seconds} s, or another resource limit)"
        else:
            status = f"exit code {self.exit_code}"
        parts = [status]
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            if text:
                parts.append(f"{name}:\n{text.rstrip()}")
        if self.truncated:
            parts.append(f"[output cut to {limits.output_chars} characters]")
        return "\n".join(parts)


def run_python(
    code: str, limits: SandboxLimits = SandboxLimits(), *, channel: socket.socket | None = None
) -> SandboxResult:
    """Run `code` with the sandbox's Python (stdlib only) and return its exit status and output.

    `channel` (optional) becomes the code's stdin, for a conversation with the caller while it runs
    (see `judge.py`); this function closes the caller's copy once the sandbox holds its own.

    Raises `SandboxUnavailableError` where the sandbox cannot be built (the message says why)."""
    try:
        _remove_stale_dirs()
        base = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
    except BaseException:
        if channel is not None:
            channel.close()
        raise
    try:
        root = base / "root"  # an empty mount point: the child mounts its private tmpfs here
        root.mkdir()
        (base / "main.py").write_text(code, encoding="utf-8", errors="replace")
        python = os.path.realpath(sys.executable)
        config = {
            "root": str(root),
            "code_file": str(base / "main.py"),
            "python": python,
            "python_home": os.path.realpath(sys.base_prefix),
            "error_file": str(base / "setup_error"),  # only the launcher writes here, never the code
            "parent_pid": os.getpid(),  # the launcher dies with this process (PR_SET_PDEATHSIG)
            "keep_stdin": channel is not None,
            "limits": asdict(limits),
        }
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        with open(base / "stdout", "wb+") as out, open(base / "stderr", "wb+") as err:
            try:
                proc = subprocess.Popen(
                    [python, "-I", "-S", "-B", str(CHILD), json.dumps(config)],
                    stdin=channel if channel is not None else subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    cwd=base,
                    start_new_session=True,  # its own process group, killed as a whole on timeout
                )
            finally:
                if channel is not None:
                    channel.close()
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)  # the init dies, so the kernel kills its namespace
                proc.wait()
            stdout, cut_out = _read(out, limits.output_chars)
            stderr, cut_err = _read(err, limits.output_chars)
        setup_error = (base / "setup_error").read_text() if (base / "setup_error").exists() else ""
        if setup_error:
            raise SandboxUnavailableError(setup_error.strip())
        exit_code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        return SandboxResult(exit_code, stdout, stderr, timed_out, cut_out or cut_err)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@functools.cache
def _remove_stale_dirs() -> None:
    """Once per process: delete the temp dirs of sandbox owners that died without cleaning up
    (killed with SIGKILL mid-run). Their sandboxes died with them (PR_SET_PDEATHSIG)."""
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        owner = path.name[len(TEMP_PREFIX) :].split("-")[0]
        if owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _read(file, limit: int) -> tuple[str, bool]:
    file.seek(0)
    data = file.read(limit * 4 + 4).decode("utf-8", "replace")
    cut = len(data) > limit or file.read(1) != b""
    return data[:limit], cut


@functools.cache
def sandbox_problem() -> str | None:
    """None where the sandbox works on this machine, else why not (one line). Cached per process."""
    if not sys.platform.startswith("linux"):
        return f"the Python sandbox needs Linux namespaces; this is {sys.platform}"
    try:
        result = run_python("print(6 * 7)")
    except SandboxUnavailableError as exc:  # the launcher's message names the step and the cause
        return f"the Python sandbox cannot be built here: {exc}"
    if result.stdout.strip() != "42":
        return f"the Python sandbox failed a trial run: {result.describe(SandboxLimits())[:200]}"
    return None
