"""The processes of a run under torchrun: which one this is, the process group, and the collectives every command
shares (a barrier, rank 0's value for all, every rank's value, rows of an array gathered from every rank).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment; without them we run as one process and
every function here is a no-op. It sits in the model wing, beside the device and precision of runtime.py, because
training (several processes on one batch) and the corpus-wide encoding of evaluate and prepare-data (each rank
encodes a slice, retrieval/embedding.py) both stand on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads where a process group is used: reading the world costs nothing (a bm25-only run)
    import torch

GATHER_BYTES = 64 << 20  # of each rank's rows sent at once by gather_rows: bounded buffers, whatever the corpus


@dataclass(frozen=True)
class WorldInfo:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress and writes files."""
        return self.rank == 0

    def slice(self, count: int) -> tuple[int, int]:
        """This rank's contiguous share [start, end) of `count` rows; shares differ in size by at most one."""
        return self.rank * count // self.size, (self.rank + 1) * count // self.size


def world_from_env() -> WorldInfo:
    """The process's place in the job, from torchrun's variables; one process when they are absent."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return WorldInfo()
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return WorldInfo(rank=rank, size=size, local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def current_world() -> WorldInfo:
    """The world of the process group this process has joined; one process when it joined none (a library call in a
    run that never started one sees no world, whatever the environment says)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return WorldInfo()
    rank = dist.get_rank()
    return WorldInfo(rank=rank, size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", rank)))


def join_process_group(world: WorldInfo, device: torch.device) -> None:
    """Join the process group: nccl between CUDA devices, gloo on CPU. Nothing to do for one process."""
    import torch
    import torch.distributed as dist

    if not world.is_distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=world.rank, world_size=world.size,
                            device_id=device if device.type == "cuda" else None)


def leave_process_group(world: WorldInfo) -> None:
    import torch.distributed as dist

    if world.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: WorldInfo) -> None:
    import torch.distributed as dist

    if world.is_distributed and dist.is_initialized():
        dist.barrier()


def broadcast_from_main(value, world: WorldInfo):
    """Rank 0's value (any picklable object) on every rank: one decision for all, e.g. early stopping."""
    import torch.distributed as dist

    if not world.is_distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value, world: WorldInfo) -> list:
    """Every rank's `value` (any picklable object), in rank order, on every rank; [value] for one process."""
    import torch.distributed as dist

    if not world.is_distributed:
        return [value]
    values = [None] * world.size
    dist.all_gather_object(values, value)
    return values


def gather_rows(local: np.ndarray, out: np.ndarray, world: WorldInfo) -> None:
    """Every rank's rows into `out` on every rank: rank r's `local` is out[world.slice(len(out)) of rank r]. The rows
    travel as raw bytes (any dtype, gloo and nccl alike) a bounded piece at a time, padded to the longest share."""
    import torch
    import torch.distributed as dist

    if not world.is_distributed:
        out[:] = local
        return
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    shares = [WorldInfo(rank, world.size).slice(len(out)) for rank in range(world.size)]
    longest = max(end - start for start, end in shares)
    row_bytes = out.dtype.itemsize * int(np.prod(out.shape[1:], dtype=np.int64))
    step = max(1, GATHER_BYTES // max(row_bytes, 1))
    raw = np.ascontiguousarray(local).view(np.uint8).reshape(len(local), row_bytes)  # (rows, bytes)
    for offset in range(0, longest, step):
        count = min(step, longest - offset)
        piece = torch.zeros((count, row_bytes), dtype=torch.uint8, device=device)
        mine = raw[offset : offset + count]
        piece[: len(mine)] = torch.from_numpy(np.ascontiguousarray(mine)).to(device)
        pieces = [torch.empty_like(piece) for _ in range(world.size)]
        dist.all_gather(pieces, piece)
        for (start, end), gathered in zip(shares, pieces):
            rows = max(0, min(count, end - start - offset))
            if rows:
                target = out[start + offset : start + offset + rows]
                target.view(np.uint8).reshape(rows, row_bytes)[:] = gathered[:rows].cpu().numpy()
