"""The Python sandbox's cost and containment, and the hidden-test check against the old exploit.

Prints (1) the start-up cost per call of a bare `python -I -S -c pass`, of `run_python` (bwrap with
setpriv, prlimit and the seccomp filter), of a bare `bwrap` with the same root and no filter, limits
or uid change (its floor), and with `--old REV` of the hand-rolled sandbox of that git revision
(`envs/tools/sandbox.py` + `sandbox_child.py`), each the median of 3 interleaved rounds of
`--calls` calls; (2) processes a fork bomb gets under RLIMIT_NPROC=16, in `run_python` and in bwrap
run as root with `--uid` (why `run_python` drops to a real uid with setpriv instead); (3) how many
of Python-v0's tasks the old exploit (print the pass marker read from /main.py, exit 0) solves, and
what one hidden-test check costs.
Run: `python bench/sandbox.py --old 99cf07e` (as root).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from turngym.envs.tools.coding import PROBLEMS, PythonEnv
from turngym.envs.tools.sandbox import run_python

PYTHON = os.path.realpath(sys.executable)
HOME = os.path.realpath(sys.base_prefix)
FORKS = (
    "import os, time\nn = 0\ntry:\n    for _ in range(100):\n        if os.fork() == 0:\n"
    "            time.sleep(1)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
    "print(n)\n"
)
EXPLOIT = (
    "import os, re\nprint(re.search(r'tests passed [0-9a-f]+', open('/main.py').read()).group(0), flush=True)\n"
    "os._exit(0)\n"
)


def bwrap_command(code: str) -> list[str]:
    """bwrap with the root `run_python` builds, as root with `--uid`: no seccomp filter, rlimits or setpriv."""
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--tmpfs", "/"]
    command += ["--ro-bind", HOME, HOME]
    for lib in ("/lib", "/lib64", "/usr/lib", "/usr/lib64"):
        if os.path.islink(lib):
            command += ["--symlink", os.readlink(lib), lib]
        elif os.path.isdir(lib):
            command += ["--ro-bind", lib, lib]
    for dev in ("/dev/null", "/dev/zero", "/dev/urandom"):
        command += ["--dev-bind", dev, dev]
    command += ["--tmpfs", "/work", "--tmpfs", "/tmp", "--chdir", "/work", "--uid", "65534", "--gid", "65534"]
    return [*command, "--clearenv", "--setenv", "HOME", "/work", PYTHON, "-I", "-S", "-B", "-c", code]


def run_bwrap(code: str, nproc: int | None = None) -> str:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    result = subprocess.run(
        bwrap_command(code), capture_output=True, text=True, timeout=30, preexec_fn=limit if nproc else None
    )
    return result.stdout + result.stderr


def old_run_python(revision: str):
    """`run_python` of the hand-rolled sandbox at `revision`, loaded from git into a temp dir."""
    root = Path(__file__).resolve().parents[1]
    folder = Path(tempfile.mkdtemp(prefix="turngym-bench-"))
    for name in ("sandbox.py", "sandbox_child.py"):
        show = ["git", "show", f"{revision}:envs/tools/{name}"]
        (folder / name).write_text(
            subprocess.run(show, cwd=root, check=True, capture_output=True, text=True).stdout
        )
    spec = importlib.util.spec_from_file_location("old_sandbox", folder / "sandbox.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_sandbox"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.run_python


def interleaved_ms(variants: dict, calls: int, rounds: int = 3) -> dict[str, float]:
    """Each variant's median over `rounds` rounds of its median ms per call; variants alternate."""
    per_round = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1000)
            per_round[name].append(statistics.median(times))
    return {name: statistics.median(values) for name, values in per_round.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=10, help="calls per variant and round")
    parser.add_argument("--old", metavar="REV", help="also time the hand-rolled sandbox of this git revision")
    args = parser.parse_args()
    bare = [PYTHON, "-I", "-S", "-c", "pass"]
    variants = {
        "python -I -S -c pass (no sandbox)": lambda: subprocess.run(bare, check=True),
        "run_python (bwrap sandbox)": lambda: run_python("pass"),
        "bwrap alone, same root": lambda: run_bwrap("pass"),
    }
    if args.old:
        old = old_run_python(args.old)
        variants[f"hand-rolled run_python at {args.old}"] = lambda: old("pass")
    print(f"start-up cost per call (median of 3 interleaved rounds of {args.calls} calls)")
    for name, ms in interleaved_ms(variants, args.calls).items():
        print(f"  {name:38} {ms:7.1f} ms")

    print("\nfork bomb under RLIMIT_NPROC=16 (processes forked, of 100)")
    print(f"  {'run_python':38} {run_python(FORKS).stdout.strip():>7}")
    # As root, bwrap's --uid lives in a user namespace mapped to host uid 0, which RLIMIT_NPROC exempts.
    print(f"  {'bwrap --uid 65534, run as root':38} {run_bwrap(FORKS, nproc=16).strip():>7}")

    env = PythonEnv()
    solved = 0
    for index in range(len(PROBLEMS)):
        env.reset(options={"task_id": env.task_table()[0][index].task_id})
        solved += env.check(EXPLOIT)
    print(f"\nPython-v0 tasks the /main.py marker exploit solves: {solved}/{len(PROBLEMS)}")
    env.reset(options={"task_id": "python-000-fizzbuzz"})
    ms = interleaved_ms({"check": lambda: env.check(env.task.answer)}, args.calls)["check"]
    print(f"hidden-test check of a correct answer: {ms:.1f} ms (median)")


if __name__ == "__main__":
    main()
