"""Several processes, one training run: what ``torchrun … -m tlhelpers train`` relies on (chapter 7, indirectly).

``torchrun --nproc_per_node=N`` starts N copies of the same command and tells
each, through environment variables (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``), who it is.  :func:`start` reads them and joins the process
group: gloo on the CPU, NCCL on GPUs (one GPU per process).  Without torchrun
it returns a one-process :class:`Context`, and every function here does the
one-process thing, so the same code runs either way.

* :func:`wrap` puts the model in ``DistributedDataParallel``, which averages
  the gradients of all processes after every backward pass: N processes with
  batches of B/N take the same step as one process with batches of B.
* :class:`EpochSampler` is a ``DistributedSampler``: every epoch it shuffles
  the indices with ``seed + epoch`` and gives each process every N-th of them,
  so the N batches of one step together are the one process's batch.  It
  hands out ``(epoch, index)`` pairs, so a dataset can draw its random
  augmentation from them (:class:`SeededItems`) whichever process or loader
  worker reads the item.
* :func:`shard` and :func:`gather` split a list of work over the processes and
  bring the pieces back together (feature extraction, test predictions);
  :func:`total` sums numbers over the processes (validation loss and accuracy).
* Only the main process (rank 0) writes files and prints: :attr:`Context.main`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from tlhelpers import runtime


@dataclass(frozen=True)
class Context:
    """Who this process is: ``rank`` of ``world_size``, its ``device``, and whether it is the ``main`` one."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> bool:
    """Whether torchrun (or another launcher that sets ``WORLD_SIZE``) started this process with others."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device | str | None = None) -> Context:
    """Join torchrun's process group, or describe the single process.

    ``device``: default :func:`tlhelpers.runtime.pick_device`; under torchrun
    on CUDA each process takes the GPU ``LOCAL_RANK``.  The backend is NCCL
    on CUDA, gloo otherwise.
    """
    device = torch.device(device) if device is not None else runtime.pick_device()
    if not launched():
        return Context(device=device)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def stop(context: Context) -> None:
    """Leave the process group that :func:`start` joined (nothing for one process)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, context: Context) -> nn.Module:
    """``model`` on the context's device, in ``DistributedDataParallel`` when there are several processes."""
    model.to(context.device)
    if not context.distributed:
        return model
    ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a ``DistributedDataParallel`` wrapper, or ``model`` itself."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` that yields ``(epoch, index)`` pairs.

    Shuffled with ``seed + epoch`` (call ``set_epoch`` before each epoch);
    process ``rank`` gets positions ``rank, rank + N, …`` of the shuffled
    order, so consecutive batches of B/N items on N processes make up the
    one-process batches of B items.  When the number of items is not a
    multiple of N, the sampler repeats a few items to even the processes out.
    """

    def __init__(self, n: int, context: Context, seed: int = 0, shuffle: bool = True):
        super().__init__(range(n), num_replicas=context.world_size, rank=context.rank, shuffle=shuffle, seed=seed)

    def __iter__(self):
        return ((self.epoch, index) for index in super().__iter__())


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item in one epoch: the same in every process, worker and resumed run."""
    digest = hashlib.sha256(f"{seed}/{epoch}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class SeededItems(Dataset):
    """``dataset[index]`` drawn with a random state of its own per ``(epoch, index)``.

    A random augmentation then depends only on the run's seed, the epoch and
    the item: not on the loader's worker processes (``persistent_workers``
    keeps their random streams running from epoch to epoch), not on the
    number of processes, and not on where an interrupted run was resumed.
    The global random state is left as it was.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed(self.seed, epoch, index))
            return self.dataset[index]


def shard(items: Sequence, context: Context) -> list[int]:
    """Positions of ``items`` that this process handles: every N-th, from its rank."""
    return list(range(context.rank, len(items), context.world_size))


def gather(part, context: Context) -> list:
    """Every process's ``part`` (any picklable object), in rank order, on every process."""
    if not context.distributed:
        return [part]
    parts = [None] * context.world_size
    dist.all_gather_object(parts, part)
    return parts


def total(values: Sequence[float], context: Context) -> list[float]:
    """``values`` summed over the processes (float64)."""
    tensor = torch.tensor(list(values), dtype=torch.float64)
    if context.distributed:
        backend_device = context.device if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = tensor.to(backend_device)
        dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def from_main(make: Callable[[], object], context: Context):
    """``make()`` run on the main process only, its result sent to every process (e.g. reading a checkpoint)."""
    if not context.distributed:
        return make()
    box = [make() if context.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(context: Context) -> None:
    """Wait until every process gets here."""
    if context.distributed:
        dist.barrier()
