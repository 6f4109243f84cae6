"""Training on many processes (`dpedge train --nproc N`, or torchrun across machines):
DistributedDataParallel, gloo on CPU and nccl on GPUs, one step equal to the step a single
process takes on the same global batch.

- Every rank draws the same permutation of the epoch's windows (same seed, same pruned
  list: the scores are identical on every rank) and cuts it into global batches of
  `--batch-size`; rank r takes positions r, r + N, … of each (`World.split`).
- A rank's loss is its windows' summed loss × N / (windows in the global batch). DDP
  averages the gradients over the N ranks, so the step is the global batch's mean loss,
  whatever the split.
- MaskedBatchNorm sums its statistics over the ranks (`World.sum`, differentiable): the
  statistics are the global batch's, exactly as one process computes them. Per-rank
  statistics would make the normalisation, and so the trained model, depend on the number
  of processes, and a rank holding a few windows would normalise by a noisy estimate.
- The FLOPs budget's penalty is on the global batch's mean cost (summed over ranks), for
  the same reason.
- Each batch's per-window losses are summed into one vector over the global batch on
  every rank (`World.share`), so every rank updates the same ST-Prune scores.
- Only rank 0 writes checkpoints, metrics and the progress bar; all ranks read resume.pt.
- A measured cost target's table is found (read or timed) by rank 0 alone and sent to the
  others (`World.from_main`), so every rank prices the budget with the same table.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from dynaprune_edge.errors import ConfigError

TIMEOUT = timedelta(minutes=10)
"""How long a collective waits for a rank that stopped answering before the run fails
(torchrun ends the others when one dies; this bounds the wait when one hangs)."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def split(self, batch: list[int]) -> list[int]:
        return batch[self.rank :: self.size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of `tensor` over the ranks, differentiable (each rank's gradient is the
        sum of all ranks' gradients of their losses)."""
        return tensor if self.size == 1 else _SumOverRanks.apply(tensor)

    def share(self, values: torch.Tensor, batch_size: int) -> torch.Tensor:
        """(batch_size,) the values every rank holds for its share of a global batch, in the
        global batch's order, on every rank."""
        full = torch.zeros(batch_size, dtype=values.dtype)
        full[self.rank :: self.size] = values.detach()
        if self.size > 1:
            dist.all_reduce(full)
        return full

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def from_main(self, make: Callable[[], str]) -> str:
        """`make()` run on rank 0 alone and its text sent to every rank: for what must be the
        same everywhere and is costly or noisy to find (a measured cost table: ranks timing
        at once would compete for the cores and each get another table). Sent as UTF-8
        bytes, not pickled."""
        if self.size == 1:
            return make()
        device = (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )
        payload = make().encode() if self.main else b""
        length = torch.tensor([len(payload)], dtype=torch.int64, device=device)
        dist.broadcast(length, src=0)
        data = (
            torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
            if self.main
            else torch.empty(int(length), dtype=torch.uint8, device=device)
        )
        dist.broadcast(data, src=0)
        return data.cpu().numpy().tobytes().decode()


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) forward, and backward too: every rank's loss depends on every rank's
    share of the sum, so the gradient reaching a share is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        total = gradient.clone()
        dist.all_reduce(total)
        return total


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """`model` under DistributedDataParallel, its buffers left alone in the forward pass
    (BatchNorm's running statistics are the same on every rank by construction)."""
    import inspect

    parallel = torch.nn.parallel.DistributedDataParallel
    buffers = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(parallel).parameters
        else {"broadcast_buffers": False}
    )  # the older name, before torch 2.13
    return parallel(model, **buffers)


def current_world() -> World:
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def join_from_environment() -> World:
    """The world torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR, …), joined; one process
    alone when the variables are absent."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=TIMEOUT)
    return current_world()


_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "NCCL communicator was aborted")


def peer_lost(error: BaseException) -> bool:
    """Whether `error` is a collective failing because another rank died (gloo reports it
    as a plain RuntimeError naming the socket error; nccl as a DistError)."""
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in _PEER_LOST)
    )


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def check_nproc(nproc: int) -> None:
    if nproc < 2:
        raise ConfigError(f"--nproc must be ≥ 2 to launch processes, got {nproc} (omit it for one)")


def launch(nproc: int, arguments: list[str]) -> None:
    """`dpedge train --nproc N`: `dpedge train ARGUMENTS` in N local processes, this one
    the torchrun agent (torch.distributed.run) that starts them and stops them all when one
    fails. Across machines, run torchrun yourself (docs/guides/st-prune.md: "Many processes, many machines")."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    check_nproc(nproc)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the ranks share the cores
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its report restates the ranks' errors
    options = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "-m", "dynaprune_edge", "train", *arguments]
    )
    try:
        run(options)
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()  # the root cause: the others may have been stopped for it
        code = failure.exitcode
        how = f"was killed ({signal.Signals(-code).name})" if code < 0 else f"failed (exit {code}; its error is above)"
        raise ConfigError(
            f"training process {rank} of {nproc} {how}; the others were stopped, and --resume continues from the last epoch"
        ) from None
