"""The sandbox's launcher, run as `python -I -S sandbox_child.py CONFIG_JSON` with the code on stdin.

Stdlib only (it runs without site-packages). Steps: unshare the mount, network, PID, IPC and UTS
namespaces (plus a user namespace when not root); fork the namespace's init, which builds a fresh
root (a tmpfs holding read-only binds of the Python install and the shared libraries, /dev/null,
/dev/urandom, an empty writable /work and /tmp), pivots into it and detaches the host's root; the
init forks the user process, which sets the rlimits, drops to uid/gid `nobody` (or, without root,
into a nested unmapped user namespace), sets no_new_privs and execs Python on the code.
When the init exits (the user process ended or was killed) the kernel kills every process left in
the PID namespace, so nothing the code started outlives the run.
"""

import ctypes
import json
import os
import platform
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
ST_TO_MS = {2: MS_NOSUID, 4: MS_NODEV, 8: MS_NOEXEC, 1024: MS_NOATIME, 2048: MS_NODIRATIME, 4096: MS_RELATIME}
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
NOBODY = 65534
SETUP_FAILED = 125  # exit status: the sandbox could not be built (the parent raises)

libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(
        libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def bind(source: str, target: str, *, writable: bool = False) -> None:
    """Bind `source` onto `target`, read-only unless `writable`, never setuid/exec-from-devices."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(source, target, None, MS_BIND | MS_REC)
    # A remount must keep the flags the kernel locked on the original mount (in a user namespace).
    kept = 0
    for st_flag, ms_flag in ST_TO_MS.items():
        if os.statvfs(source).f_flag & st_flag:
            kept |= ms_flag
    flags = MS_BIND | MS_REMOUNT | MS_NOSUID | kept | (0 if writable else MS_RDONLY)
    mount("none", target, None, flags)


def build_root(root: str, disk_mb: int, python_home: str, as_root: bool) -> None:
    """A fresh root at `root`: tmpfs + read-only binds; then pivot into it and drop the host's root."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)  # our mounts never propagate to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={disk_mb}m,mode=755")
    inside = lambda path: os.path.join(root, path.lstrip("/"))  # noqa: E731
    bind(python_home, inside(python_home))  # the interpreter, its stdlib and libpython, at the same path
    for lib in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):  # the shared libraries and ld.so
        if os.path.islink(lib):
            os.makedirs(os.path.dirname(inside(lib)), exist_ok=True)
            os.symlink(os.readlink(lib), inside(lib))
        elif os.path.isdir(lib):
            bind(lib, inside(lib))
    for dev in ("/dev/null", "/dev/zero", "/dev/urandom"):
        bind(dev, inside(dev), writable=True)
    for path, mode in (("/work", 0o700), ("/tmp", 0o1777)):
        os.makedirs(inside(path))
        os.chmod(inside(path), mode)
    if as_root:  # else /work already belongs to the caller, whom the user process stays
        os.chown(inside("/work"), NOBODY, NOBODY)
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unsupported architecture {platform.machine()}")
    check(libc.syscall(number, b".", b"."), "pivot_root")  # the old root now sits under the new one
    check(libc.umount2(b".", MNT_DETACH), "detach the host root")
    os.chdir("/")


def set_limits(limits: dict) -> None:
    mb = 1 << 20
    for name, value in (
        ("RLIMIT_CPU", limits["cpu_seconds"]),  # soft = hard: the kernel sends SIGKILL at the limit
        ("RLIMIT_AS", limits["memory_mb"] * mb),
        ("RLIMIT_NPROC", limits["max_processes"]),
        ("RLIMIT_FSIZE", limits["file_size_mb"] * mb),  # also caps the captured stdout/stderr files
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_CORE", 0),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def run_user_code(code: str, config: dict, as_root: bool) -> None:
    """In the init's child: limits, drop privileges, exec Python on the code. Never returns."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    set_limits(config["limits"])
    if as_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # real, effective and saved ids: every capability is gone for good
    else:
        check(libc.unshare(CLONE_NEWUSER), "unshare a nested user namespace")  # caps only in an empty ns
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir("/work")
    env = {"PATH": "/nonexistent", "HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    os.execve(config["python"], [config["python"], "-I", "-S", "-B", "-c", code], env)


def init(code: str, config: dict, as_root: bool) -> int:
    """PID 1 of the new namespace: build the root, run the user process, pass on its status."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the launcher (wall-clock kill)
    build_root(config["root"], config["limits"]["disk_mb"], config["python_home"], as_root)
    pid = os.fork()
    if pid == 0:
        try:
            run_user_code(code, config, as_root)
        except BaseException as exc:
            os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def main() -> None:
    config = json.loads(sys.argv[1])
    code = sys.stdin.buffer.read().decode("utf-8", "replace")
    as_root = os.geteuid() == 0
    try:
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        uid, gid = os.getuid(), os.getgid()
        check(libc.unshare(flags | (0 if as_root else CLONE_NEWUSER)), "unshare namespaces")
        if not as_root:  # become root inside the new user namespace, to be able to mount
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
    except OSError as exc:
        os.write(2, f"sandbox setup failed: {exc}\n".encode())
        os._exit(SETUP_FAILED)
    pid = os.fork()
    if pid == 0:
        try:
            status = init(code, config, as_root)
        except BaseException as exc:
            os.write(2, f"sandbox setup failed: {exc}\n".encode())
            status = SETUP_FAILED
        os._exit(status if status >= 0 else 128 - status)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
