"""Starting the processes of a multi-process run: `turngym train --num-processes N` runs
`python -m turngym.trainers.common.launch ...`, which is `accelerate launch` with a failed process
reported in one line (trainers/common/distributed.py is what the processes share)."""

from __future__ import annotations

from collections.abc import Sequence

from turngym.errors import ConfigError


def free_port() -> int:
    """A TCP port free on this machine now (the rendezvous of a one-machine launch)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(num_processes: int, args: Sequence[str]) -> list[str]:
    """The `accelerate launch` command (through `launch`) that runs `python -m turngym.cli ARGS` in `num_processes`
    processes on this machine: one per GPU, or, without GPUs, on the CPU with gloo (Accelerate's
    `--cpu` starts one process only, so `--multi_gpu` stands for both; the trainers pick gloo when
    torch sees no GPU). Mixed precision stays TurnGym's own (`mixed_precision` key). More processes
    than GPUs is a `ConfigError` (two processes cannot share a GPU under NCCL)."""
    import sys

    import torch

    gpus = torch.cuda.device_count()
    if 0 < gpus < num_processes:
        raise ConfigError(f"--num-processes {num_processes} but torch sees {gpus} GPUs: one process per GPU")

    return [
        sys.executable,
        "-m",
        "turngym.trainers.common.launch",  # `accelerate launch`, its failure report in one line
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port()),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "turngym.cli",
        *args,
    ]


def launch(argv: Sequence[str]) -> int:
    """`accelerate launch ARGV`; when a process fails, one line saying which and how (after that
    process's own error), instead of torchrun's report and traceback; then the exit status is 1."""
    import logging
    import signal
    import sys

    import torch.distributed.run  # noqa: F401  (makes the launcher's loggers, quietened below)
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):  # torchrun's own report of the failure
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        launch_command(launch_command_parser().parse_args(list(argv)))
    except ChildFailedError as failed:
        process, failure = failed.get_first_failure()
        how = f"exit code {failure.exitcode}"
        if failure.exitcode < 0:
            how = f"signal {signal.Signals(-failure.exitcode).name}"
        print(
            f"error: process {process} of the run ended ({how}), so the run stopped; its newest "
            "checkpoint resumes it (--resume)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(launch(sys.argv[1:]))
