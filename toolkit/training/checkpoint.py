"""Checkpoints a killed run resumes from: ``out/checkpoints/step-N/``.

A checkpoint holds everything the rest of the run depends on, so that a resumed run ends with
the same weights, losses and metrics as one that was never interrupted (bit for bit on a CPU):

- the trainable parameters (the adapters, or the whole model in full mode) and the optimizer state;
- the random number generators of every process (dropout masks of the remaining steps);
- the position in the data (epoch and batches consumed; the sampler's order is a function of
  the seed and epoch) and the log so far (losses, learning rates, held-out results, best step).

The learning rate is a function of the step, so there is no scheduler state to keep. Under
DeepSpeed the model and optimizer are sharded over the processes; there ``accelerate``'s own
``save_state``/``load_state`` write and read them (and the generator states).

A checkpoint is written to a temporary folder and renamed into place once complete; the newest
``keep`` complete checkpoints are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import InputError
from toolkit.io import give_default_modes
from toolkit.training.output import CHECKPOINTS_DIR

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from toolkit.training.config import TrainConfig

STATE_NAME = "trainer_state.json"
WEIGHTS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
ACCELERATE_DIR = "accelerate"  # accelerate.save_state output (DeepSpeed)
_STEP_DIR = re.compile(r"^step-(\d+)$")

# Settings a resumed run may change: where and how fast it runs, how often it logs, evaluates
# and saves. Anything else changes the result, and resuming would silently mix two runs.
RESUMABLE_CHANGES = frozenset(
    {
        "out",
        "device",
        "num_workers",
        "cpu_threads",
        "log_every",
        "eval_data",
        "eval_images",
        "eval_every",
        "eval_batch_size",
        "save_every",
        "keep_checkpoints",
        "resume",
        "best_metric",
        "gradient_checkpointing",
    }
)


@dataclass
class TrainState:
    """Where a run is; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # epoch the next batch belongs to
    batch_in_epoch: int = 0  # batches of that epoch already consumed (per process)
    samples: int = 0  # training samples seen, all processes together
    seconds: float = 0.0  # training time so far (resumed runs add to it)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    heldout: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"step", "metric", "value"} of the model in out/best
    num_processes: int = 1
    draws: list[int] = field(default_factory=list)  # training examples drawn from each data set

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def checkpoints_root(out: Path) -> Path:
    return out / CHECKPOINTS_DIR


def complete_checkpoints(out: Path) -> list[Path]:
    """Finished checkpoints (their state file exists), oldest first."""
    root = checkpoints_root(out)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_NAME).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: Path) -> Path | None:
    done = complete_checkpoints(out)
    return done[-1] if done else None


def is_deepspeed(accelerator: Accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def save_checkpoint(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: Any,
    state: TrainState,
    config: TrainConfig,
    out: Path,
    keep: int = 1,
) -> Path:
    """Write ``out/checkpoints/step-<state.step>``; every process must call it."""
    import torch
    from safetensors.torch import save_file

    root = checkpoints_root(out)
    final = root / f"step-{state.step:06d}"
    partial = root / f".step-{state.step:06d}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    accelerator.wait_for_everyone()
    if is_deepspeed(accelerator):
        accelerator.save_state(str(partial / ACCELERATE_DIR))
    else:
        _save_rng(partial / f"rng_{accelerator.process_index}")
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            weights = {n: p.detach().cpu().contiguous() for n, p in unwrapped.named_parameters() if p.requires_grad}
            save_file(weights, str(partial / WEIGHTS_NAME))
            torch.save(optimizer.state_dict(), partial / OPTIMIZER_NAME)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        payload = {"state": state.to_dict(), "config": config.to_dict()}
        (partial / STATE_NAME).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        give_default_modes(partial)  # safetensors writes its files 0600
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
        for old in complete_checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(
    path: Path, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, config: TrainConfig
) -> TrainState:
    """Restore model, optimizer and generators from ``path``; returns the saved state."""
    import torch
    from safetensors.torch import load_file

    payload = json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    check_resumable(payload["config"], config.to_dict(), path)
    state = TrainState(**payload["state"])
    if state.num_processes != accelerator.num_processes:
        raise InputError(
            f"checkpoint {path} was written by {state.num_processes} process(es), this run has "
            f"{accelerator.num_processes}; resume with the same number so the data order carries over"
        )
    if is_deepspeed(accelerator):
        accelerator.load_state(str(path / ACCELERATE_DIR))
        return state
    unwrapped = accelerator.unwrap_model(model)
    saved = load_file(str(path / WEIGHTS_NAME))
    params = {n: p for n, p in unwrapped.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise InputError(f"checkpoint {path} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_NAME, map_location="cpu", weights_only=True))
    _load_rng(path / f"rng_{accelerator.process_index}")
    return state


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume with settings that change what the run computes."""
    differ = sorted(
        k for k in set(saved) | set(current) if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if differ:
        detail = "; ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ[:4])
        raise InputError(
            f"cannot resume from {path}: settings differ from the checkpoint's ({detail}); "
            "start a fresh run or restore those settings"
        )


# --------------------------------------------------------------------------- random generators


def _save_rng(stem: Path) -> None:
    """Python and numpy states as JSON, torch states as tensors (loadable with weights_only)."""
    import torch

    version, internal, gauss = random.getstate()
    # legacy=True is numpy's default; spelled out because the stub types the bare call as the dict form.
    state = np.random.get_state(legacy=True)
    if not isinstance(state, tuple):  # the global generator is MT19937, whose legacy state is a tuple
        raise TypeError(f"unexpected numpy random state {type(state).__name__}")
    kind, keys, pos, has_gauss, cached = state
    stem.with_suffix(".json").write_text(
        json.dumps(
            {
                "python": [version, list(internal), gauss],
                "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            }
        )
    )
    tensors: dict[str, torch.Tensor | list[torch.Tensor]] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(tensors, stem.with_suffix(".pt"))


def _load_rng(stem: Path) -> None:
    import torch

    values = json.loads(stem.with_suffix(".json").read_text())
    version, internal, gauss = values["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = values["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = torch.load(stem.with_suffix(".pt"), weights_only=True)
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])
