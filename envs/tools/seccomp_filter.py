"""The sandbox's seccomp filter, compiled with libseccomp (through ctypes) to the classic-BPF program
that `bwrap --seccomp FD` loads before it execs the code."""

from __future__ import annotations

import ctypes
import functools
import os

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
EPERM, ENOSYS, AF_UNIX = 1, 38, 1
SCMP_ACT_ALLOW, SCMP_ACT_ERRNO = 0x7FFF0000, 0x00050000
SCMP_CMP_NE, SCMP_CMP_MASKED_EQ = 1, 7
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
CLONE_NEW_FLAGS = (
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
)


class ArgCmp(ctypes.Structure):
    """libseccomp's `struct scmp_arg_cmp`."""

    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64))


@functools.cache
def bpf_program() -> bytes:
    """Deny `DENIED_SYSCALLS`, `clone` with any CLONE_NEW* flag, `clone3` (ENOSYS, so libc falls back
    to `clone`) and sockets other than AF_UNIX; syscalls of another ABI (x32, i386) kill the process
    (libseccomp's default for a foreign architecture). Raises OSError without libseccomp."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(ArgCmp),
    )  # fmt: skip
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
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
        read_end, write_end = os.pipe()
        try:
            result = lib.seccomp_export_bpf(ctx, write_end)
            os.close(write_end)
            write_end = -1
            if result != 0:
                raise OSError(-result, f"seccomp_export_bpf: {os.strerror(-result)}")
            chunks = []
            while chunk := os.read(read_end, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    finally:
        lib.seccomp_release(ctx)
