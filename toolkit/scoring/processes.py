"""Which process this is when a scoring run is started with ``accelerate launch`` or ``torchrun``.

Launching, for example, ``accelerate launch --multi_gpu --num_processes 4 -m toolkit.cli score ...``
starts four copies of the command; each scores its own contiguous block of the inputs on its own
GPU and appends to its own part file, and the main process merges the parts into the one output.
On CPUs, ``torchrun --nproc_per_node 4 -m toolkit.cli score --device cpu ...`` does the same.
A plain ``python``/``qalign`` run is a world of one process and never imports ``accelerate``.

A run whose ranks never wait for each other (``--no-merge``: each writes its own part and exits,
a separate step merges) needs no process group at all: its place comes from the ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` variables alone, which torchrun, accelerate and a batch
scheduler's array jobs can all set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toolkit.errors import InputError


def _noop() -> None:
    return None


@dataclass
class ProcessGroup:
    """This process's place among the processes scoring one input list."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    barrier: Callable[[], None] = field(default=_noop, repr=False)
    gather: Callable[[Any], list[Any]] | None = field(default=None, repr=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (just ``[obj]`` for a single process)."""
        if self.world == 1 or self.gather is None:
            return [obj]
        return self.gather(obj)


def current_processes(cpu: bool | None = None, collective: bool = True) -> ProcessGroup:
    """The process group set up by ``accelerate launch`` / ``torchrun``, or a group of one.

    ``cpu`` asks for the CPU (gloo) backend; by default it is used when there is no GPU, since
    accelerate otherwise treats a CPU-only launch as a single process. Without ``collective`` no
    group is joined: rank and world are read from the environment and the barrier does nothing.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return ProcessGroup()
    if not collective:
        rank = _env_int("RANK", 0)
        if not 0 <= rank < world:
            raise InputError(f"RANK={rank} is not within WORLD_SIZE={world} (ranks run from 0 to {world - 1})")
        return ProcessGroup(rank=rank, world=world, local_rank=_env_int("LOCAL_RANK", 0))
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object

    if cpu is None:
        cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    return ProcessGroup(
        rank=state.process_index,
        world=state.num_processes,
        local_rank=state.local_process_index,
        barrier=state.wait_for_everyone,
        gather=lambda obj: gather_object([obj]),
    )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a whole number") from None


def resolve_device(device: str, group: ProcessGroup | None = None) -> str:
    """Under several processes, ``auto``/``cuda`` become this process's own GPU (``cuda:<local rank>``);
    otherwise the name is passed on unchanged for the model loader to resolve."""
    group = group or ProcessGroup()
    if group.world > 1 and str(device).lower() in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{group.local_rank}"
    return device
