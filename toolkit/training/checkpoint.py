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

A checkpoint is written to a temporary folder (``.step-N.partial``), then a manifest of the
size and SHA-256 of every file in it, last, and only then renamed into place; the newest ``keep``
checkpoints are kept. A disk that fills up, a copy that is cut short or a file edited by hand
still leaves a ``step-N`` folder whose files disagree with its manifest (or will not load):
resuming skips such a checkpoint, says so, and continues from the newest one that is intact.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import InputError
from toolkit.files import give_default_modes
from toolkit.training.output import CHECKPOINTS_DIR

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from toolkit.training.config import TrainConfig

STATE_NAME = "trainer_state.json"
WEIGHTS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
ACCELERATE_DIR = "accelerate"  # accelerate.save_state output (DeepSpeed)
MANIFEST_NAME = "manifest.json"  # written last: sizes and hashes of every other file
DAMAGED_SUFFIX = ".damaged"  # a skipped checkpoint is renamed out of the rotation to ``.step-N.damaged``
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


class DamagedCheckpoint(Exception):
    """A checkpoint whose files are missing, cut short or unreadable; the message says which."""


@dataclass
class SkippedCheckpoint:
    """A checkpoint a resumed run passed over, and why."""

    checkpoint: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


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
    """Checkpoints renamed into place (their state file exists), oldest first; whether their files
    are intact is for :func:`checkpoint_damage` to say."""
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
        _write_manifest(partial)  # last: a folder without it (or disagreeing with it) is not a checkpoint
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
    """Restore model, optimizer and generators from ``path``; returns the saved state.

    Raises :class:`DamagedCheckpoint` (before changing anything) when a file is missing, cut
    short or unreadable, and ``InputError`` when the checkpoint is intact but belongs to another
    run (other settings, process count or model).
    """
    import torch

    checkpoint_damage(path)
    payload = _read_json(path / STATE_NAME)
    try:
        saved_config, saved_state = payload["config"], payload["state"]
    except (KeyError, TypeError):
        raise DamagedCheckpoint(f"{STATE_NAME} lacks its config or state") from None
    check_resumable(saved_config, config.to_dict(), path)
    try:
        state = TrainState(**saved_state)
    except TypeError as exc:
        raise DamagedCheckpoint(f"{STATE_NAME}: {exc}") from None
    if state.num_processes != accelerator.num_processes:
        raise InputError(
            f"checkpoint {path} was written by {state.num_processes} process(es), this run has "
            f"{accelerator.num_processes}; resume with the same number so the data order carries over"
        )
    if is_deepspeed(accelerator):
        # The sharded files are accelerate's to read; the manifest has vouched for them.
        accelerator.load_state(str(path / ACCELERATE_DIR))
        return state
    # Everything is read before anything is restored, so a file that fails to load leaves the
    # model, optimizer and generators as they were for the next older checkpoint.
    saved = _read_weights(path / WEIGHTS_NAME)
    unwrapped = accelerator.unwrap_model(model)
    params = {n: p for n, p in unwrapped.named_parameters() if p.requires_grad}
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise InputError(f"checkpoint {path} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    optimizer_state = _read_torch(path / OPTIMIZER_NAME)
    rng = _read_rng(path / f"rng_{accelerator.process_index}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise DamagedCheckpoint(f"{OPTIMIZER_NAME} does not fit the optimizer: {exc}") from None
    _set_rng(rng)
    return state


def resume_checkpoint(
    out: Path, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, config: TrainConfig
) -> tuple[Path | None, TrainState | None, list[SkippedCheckpoint]]:
    """Load the newest checkpoint of ``out`` that is intact: its path and state (both None when
    there is no checkpoint at all), and the newer ones passed over, newest first, with the reason.

    A skipped checkpoint is renamed to ``.step-N.damaged`` (kept for inspection, out of the
    rotation: left as ``step-N`` it would count among the newest ``keep`` and push out the good
    checkpoints the resumed run writes). When every checkpoint is damaged the run stops with an
    ``InputError`` listing them, rather than silently starting over.
    """
    candidates = complete_checkpoints(out)
    skipped: list[SkippedCheckpoint] = []
    for path in reversed(candidates):
        try:
            state = load_checkpoint(path, accelerator, model, optimizer, config)
        except DamagedCheckpoint as exc:
            skipped.append(SkippedCheckpoint(str(path), str(exc)))
            continue
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for s in skipped:
                damaged = Path(s.checkpoint)
                target = damaged.with_name(f".{damaged.name}{DAMAGED_SUFFIX}")
                shutil.rmtree(target, ignore_errors=True)
                damaged.rename(target)
        accelerator.wait_for_everyone()
        return path, state, skipped
    if skipped:
        detail = "; ".join(f"{Path(s.checkpoint).name}: {s.reason}" for s in skipped)
        raise InputError(
            f"no usable checkpoint in {checkpoints_root(out)} ({detail}); "
            "start a fresh run without --resume (it replaces them)"
        )
    return None, None, []


def checkpoint_damage(path: Path) -> None:
    """Raise :class:`DamagedCheckpoint` unless every file listed in the manifest has its size
    and hash. Checkpoints from before manifests existed are left to the loading checks."""
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        return
    manifest = _read_json(manifest_path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise DamagedCheckpoint(f"{MANIFEST_NAME} lists no files")
    for name, expected in sorted(files.items()):
        f = path / name
        if not f.is_file():
            raise DamagedCheckpoint(f"{name} is missing")
        size = f.stat().st_size
        if size != expected.get("size"):
            raise DamagedCheckpoint(f"{name} has {size} bytes, the manifest says {expected.get('size')}")
        if _sha256(f) != expected.get("sha256"):
            raise DamagedCheckpoint(f"{name} differs from the manifest (SHA-256 mismatch)")


def _write_manifest(folder: Path) -> None:
    files = {
        f.relative_to(folder).as_posix(): {"size": f.stat().st_size, "sha256": _sha256(f)}
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != MANIFEST_NAME
    }
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DamagedCheckpoint(f"{path.name} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DamagedCheckpoint(f"{path.name} is not readable JSON ({exc})") from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise DamagedCheckpoint(f"{path.name} is missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) on a cut file
        raise DamagedCheckpoint(f"{path.name} cannot be read ({exc})") from None


def _read_torch(path: Path) -> Any:
    import torch

    if not path.is_file():
        raise DamagedCheckpoint(f"{path.name} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a cut zip archive surfaces as RuntimeError, EOFError or pickle errors
        raise DamagedCheckpoint(f"{path.name} cannot be read ({exc})") from None


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


def _read_rng(stem: Path) -> tuple[Any, Any]:
    """The saved generator states, read and checked but not yet applied (see :func:`_set_rng`)."""
    values = _read_json(stem.with_suffix(".json"))
    try:
        version, internal, gauss = values["python"]
        kind, keys, pos, has_gauss, cached = values["numpy"]
        python = (version, tuple(internal), gauss)
        numpy_state = (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
    except (KeyError, TypeError, ValueError) as exc:
        raise DamagedCheckpoint(f"{stem.name}.json is not a generator state ({exc})") from None
    tensors = _read_torch(stem.with_suffix(".pt"))
    if not isinstance(tensors, dict) or "cpu" not in tensors:
        raise DamagedCheckpoint(f"{stem.name}.pt holds no CPU generator state")
    return (python, numpy_state), tensors


def _set_rng(saved: tuple[Any, Any]) -> None:
    import torch

    (python, numpy_state), tensors = saved
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])
