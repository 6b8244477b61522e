"""The sandbox's launcher, run as `python -I -S sandbox_child.py CONFIG_JSON`; the code is in
`config["code_file"]`, and stdin is either closed or the caller's channel to the code.

The launcher dies with its parent (PR_SET_PDEATHSIG), the init with the launcher, and every process
of the PID namespace with the init, so killing the owner of a sandbox (even with SIGKILL) ends it.

Setup errors go to `config["error_file"]` through a close-on-exec descriptor, which the user's code
never holds, so no code can pass itself off as a broken sandbox.

Stdlib only (it runs without site-packages). Steps: unshare the mount, network, PID, IPC and UTS
namespaces (plus a user namespace when not root); fork the namespace's init, which builds a fresh
root (a tmpfs holding read-only binds of the Python install and the shared libraries, /dev/null,
/dev/urandom, an empty writable /work and /tmp, the code as a read-only /main.py), pivots into it
and detaches the host's root; the init forks the user process, which sets the rlimits, drops to a uid/gid of its own
(`sandbox_uid`: RLIMIT_NPROC counts per uid host-wide, so sandboxes never share a budget; without
root: into a nested unmapped user namespace), sets no_new_privs, loads a seccomp filter (libseccomp) and
execs Python on the code.
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
UID_BASE = 1_000_000_000  # per-sandbox uid and gid: UID_BASE + the launcher's pid
SETUP_FAILED = 125  # exit status when the sandbox could not be built (the error file says why)
EPERM, EAGAIN, ENOSYS, AF_UNIX = 1, 11, 38, 1
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7
CLONE_NEW_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
    0x02000000,
)
# System calls the code never needs and that widen the kernel's attack surface or undo the
# namespaces: they fail with EPERM. (Everything else is allowed; this is a deny list.)
DENIED_SYSCALLS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev", "bpf",
    "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "open_by_handle_at", "name_to_handle_at", "personality", "acct",
    "swapon", "swapoff", "reboot", "syslog", "quotactl", "fanotify_init", "sethostname",
    "setdomainname", "iopl", "ioperm", "vhangup", "lookup_dcookie",
)  # fmt: skip

libc = ctypes.CDLL(None, use_errno=True)


class ArgCmp(ctypes.Structure):
    """libseccomp's `struct scmp_arg_cmp`."""

    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64))


def load_libseccomp() -> ctypes.CDLL:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp),
    )  # fmt: skip
    lib.seccomp_load.argtypes = (ctypes.c_void_p,)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    return lib


def install_seccomp(lib: ctypes.CDLL) -> None:
    """Deny `DENIED_SYSCALLS`, `clone` with any CLONE_NEW* flag, `clone3` (ENOSYS, so libc falls back
    to `clone`) and sockets other than AF_UNIX; syscalls of another ABI (x32, i386) kill the process
    (libseccomp's default for a foreign architecture)."""
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError("seccomp_init failed")

    def rule(name: str, errno: int, *cmps: ArgCmp) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # no such system call on this architecture
            return
        array = (ArgCmp * len(cmps))(*cmps) if cmps else None
        result = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO | errno, number, len(cmps), array)
        if result != 0:
            raise OSError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    try:
        for name in DENIED_SYSCALLS:
            rule(name, EPERM)
        for flag in CLONE_NEW_FLAGS:
            rule("clone", EPERM, ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        rule("clone3", ENOSYS)
        rule("socket", EPERM, ArgCmp(0, SCMP_CMP_NE, AF_UNIX, 0))
        result = lib.seccomp_load(ctx)
        if result != 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")
    finally:
        lib.seccomp_release(ctx)


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


def sandbox_uid() -> int:
    """A uid (and gid) that no other live sandbox uses: UID_BASE + the launcher's pid, so one
    episode's fork bomb or orphans never use up another's RLIMIT_NPROC. Where this user namespace
    maps no such id (a container with a small id range), nobody, whose budget all sandboxes share."""
    uid = UID_BASE + os.getpid()
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/self/{name}") as f:
            extents = [tuple(map(int, line.split())) for line in f if line.strip()]
        if not any(inside <= uid < inside + count for inside, _, count in extents):
            return NOBODY
    return uid


def build_root(root: str, disk_mb: int, python_home: str, uid: int | None) -> None:
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
    if uid is not None:  # else /work already belongs to the caller, whom the user process stays
        os.chown(inside("/work"), uid, uid)
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


def run_user_code(config: dict, uid: int | None, seccomp: ctypes.CDLL) -> None:
    """In the init's child: limits, drop privileges, exec Python on the code. Never returns."""
    if not config["keep_stdin"]:
        os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    set_limits(config["limits"])
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # real, effective and saved ids: every capability is gone for good
    else:
        check(libc.unshare(CLONE_NEWUSER), "unshare a nested user namespace")  # caps only in an empty ns
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    install_seccomp(seccomp)
    os.chdir("/work")
    env = {"PATH": "/nonexistent", "HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    try:
        os.execve(config["python"], [config["python"], "-I", "-S", "-B", "/main.py"], env)
    except OSError as exc:
        if exc.errno != EAGAIN:
            raise
        raise OSError(
            EAGAIN,
            f"uid {os.getuid()} already runs {config['limits']['max_processes']} processes "
            "(RLIMIT_NPROC counts per uid on the whole host), so this sandbox cannot start",
        ) from None


def report_setup_failure(error_fd: int, exc: BaseException) -> None:
    os.write(error_fd, f"sandbox setup failed: {exc}\n".encode())
    os._exit(SETUP_FAILED)


def wait_for_exit(pid: int) -> int:
    """The exit code of `pid` (negative: killed by that signal). A child that stops (e.g. it made
    itself traced) is killed rather than waited for forever."""
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFSTOPPED(status):
            os.kill(pid, signal.SIGKILL)
            continue
        return os.waitstatus_to_exitcode(status)


def die_with_parent(parent_pid: int | None) -> None:
    """SIGKILL this process when its parent dies; exit now if the parent (`parent_pid`, where it is
    visible from here) already has."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(SETUP_FAILED)


def init(code: str, config: dict, uid: int | None, seccomp: ctypes.CDLL, error_fd: int) -> int:
    """PID 1 of the new namespace: build the root, run the user process, pass on its status."""
    # Die with the launcher, and so with the owner. The launcher is outside this PID namespace
    # (getppid() says 0), so a launcher that died before this line goes unnoticed; the wall-clock
    # kill reaches this process anyway, through the process group.
    die_with_parent(None)
    build_root(config["root"], config["limits"]["disk_mb"], config["python_home"], uid)
    with open("/main.py", "w", encoding="utf-8") as f:  # a file, not `-c`: no argument-size limit
        f.write(code)
    os.chmod("/main.py", 0o444)
    pid = os.fork()
    if pid == 0:
        try:
            run_user_code(config, uid, seccomp)
        except BaseException as exc:  # never return into the init's code
            report_setup_failure(error_fd, exc)
    return wait_for_exit(pid)


def main() -> None:
    config = json.loads(sys.argv[1])
    die_with_parent(config["parent_pid"])  # the owner's death (even SIGKILL) ends the sandbox
    with open(config["code_file"], encoding="utf-8", errors="replace") as f:
        code = f.read()
    as_root = os.geteuid() == 0
    error_fd = os.open(config["error_file"], os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        seccomp = load_libseccomp()  # before the pivot: found through the host's library paths
        uid = sandbox_uid() if as_root else None  # before the PID namespace: the host's pid
        flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
        caller_uid, caller_gid = os.getuid(), os.getgid()
        if libc.unshare(flags | (0 if as_root else CLONE_NEWUSER)) != 0:
            err = ctypes.get_errno()
            raise OSError(
                err, f"unshare namespaces: {os.strerror(err)} (needs root or unprivileged user namespaces)"
            )
        if not as_root:  # become root inside the new user namespace, to be able to mount
            maps = (("setgroups", "deny"), ("uid_map", f"0 {caller_uid} 1"), ("gid_map", f"0 {caller_gid} 1"))
            for name, text in maps:
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
            die_with_parent(config["parent_pid"])  # a new user namespace may reset the signal
    except OSError as exc:
        report_setup_failure(error_fd, exc)
    pid = os.fork()
    if pid == 0:
        try:
            status = init(code, config, uid, seccomp, error_fd)
        except BaseException as exc:
            report_setup_failure(error_fd, exc)
        os._exit(status if status >= 0 else 128 - status)
    status = wait_for_exit(pid)
    os._exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
