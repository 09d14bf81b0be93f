"""Fine-tuning v1: a plain training loop over the backbone interface.

Deliberately small and readable (in the spirit of nanoGPT rather than the HF ``Trainer``): load
data and backbone, choose what trains (LoRA or everything), then for each optimizer step run
``grad_accum`` micro-batches, clip, step, schedule the learning rate. ``accelerate`` places the
model and batches on the device and makes the same loop run under ``accelerate launch`` on
several GPUs; on one CPU it is a no-op.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from toolkit.models.base import QAlignBackbone
from toolkit.training.config import TrainConfig
from toolkit.training.data import load_training_data
from toolkit.training.heldout import HeldOutResult, evaluate_heldout
from toolkit.training.lora import count_parameters, prepare_trainable
from toolkit.training.losses import get_loss
from toolkit.training.output import atomic_output_dir, check_output_dir, copy_auxiliary_files, write_record
from toolkit.training.schedule import warmup_cosine, warmup_steps_for

if TYPE_CHECKING:
    import torch

_MIXED_PRECISION = {"float32": "no", "fp32": "no", "bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}


@dataclass
class TrainProgress:
    """Reported after every optimizer step."""

    step: int  # 1-based
    total_steps: int
    loss: float
    lr: float
    epoch: float
    samples: int
    elapsed_s: float
    heldout: HeldOutResult | None = None  # set on steps that ran an evaluation


@dataclass
class TrainResult:
    output_dir: Path
    mode: str
    steps: int
    samples: int
    final_loss: float  # mean loss of the last tenth of the steps (at least one)
    samples_per_s: float  # training samples per second, all processes together
    seconds: float  # training loop wall time (loading and saving excluded)
    losses: list[float]  # one per optimizer step
    lrs: list[float]
    heldout: list[HeldOutResult] = field(default_factory=list)
    trainable_parameters: int = 0
    total_parameters: int = 0
    backbone: QAlignBackbone | None = field(default=None, repr=False, compare=False)  # the trained model
    main_process: bool = True  # False in the other processes of a multi-process run

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("backbone", "heldout", "main_process")}
        d["output_dir"] = str(self.output_dir)
        d["heldout"] = [h.to_dict() for h in self.heldout]
        return d


def train(config: TrainConfig, progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and save the adapter (or model) to ``config.out``."""
    import torch

    threads = torch.get_num_threads()
    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _train(config, progress)
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, progress: Callable[[TrainProgress], None] | None) -> TrainResult:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from toolkit.models.loading import load_backbone, resolve_device, resolve_model_path

    config.validate()
    out_dir = check_output_dir(config.out)
    data = load_training_data(config.data, config.images, config.split, config.max_frames)
    heldout_data = (
        load_training_data(config.eval_data, config.eval_images, config.split, config.max_frames)
        if config.eval_data
        else None
    )
    device = resolve_device(config.device)  # fails early on a device this machine lacks
    accelerator = Accelerator(
        cpu=device.type == "cpu", mixed_precision=_MIXED_PRECISION.get(config.dtype.lower(), "no")
    )
    set_seed(config.seed)  # before the adapters are initialised and the data is shuffled

    base_path = resolve_model_path(config.model)
    backbone = load_backbone(base_path, dtype="float32", device="cpu")  # master weights in float32
    backbone.model = prepare_trainable(backbone.model, config)
    trainable, total = count_parameters(backbone.model)
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    if config.num_workers > 0:
        # Forked workers must not use the tokenizer's own thread pool (it warns, then disables it).
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    optimizer = torch.optim.AdamW(_param_groups(backbone.model, config.weight_decay), lr=config.learning_rate)
    loader = torch.utils.data.DataLoader(
        data,  # type: ignore[arg-type]  # a map-style dataset of TrainingExample
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=backbone.training_batch,
        generator=torch.Generator().manual_seed(config.seed),
        # Image decoding and preprocessing, not the model, bound small models on a GPU.
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )
    model, optimizer, loader = accelerator.prepare(backbone.model, optimizer, loader)
    backbone.model = accelerator.unwrap_model(model)
    loss_fn = get_loss(config.loss)

    steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
    total_steps = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = warmup_steps_for(total_steps, config.warmup_ratio)
    heldout: list[HeldOutResult] = []

    def run_heldout(step: int) -> HeldOutResult | None:
        if heldout_data is None:
            return None
        result = evaluate_heldout(backbone, heldout_data, config.eval_batch_size, step, accelerator.autocast)
        heldout.append(result)
        return result

    run_heldout(0)
    model.train()
    batches = _forever(loader)
    losses: list[float] = []
    lrs: list[float] = []
    samples = 0
    start = time.perf_counter()
    for step in range(total_steps):
        lr = config.learning_rate * warmup_cosine(step, total_steps, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro_losses = []
        for micro in range(config.grad_accum):
            epoch, batch = next(batches)
            # Gradients are all-reduced between processes on the last micro-batch only.
            sync = contextlib.nullcontext() if micro == config.grad_accum - 1 else accelerator.no_sync(model)
            with sync:
                loss = loss_fn(model, backbone, batch)
                accelerator.backward(loss / config.grad_accum)
            micro_losses.append(loss.detach())
            samples += int(batch["input_ids"].shape[0]) * accelerator.num_processes
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        step_loss = float(accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean"))
        losses.append(step_loss)
        lrs.append(lr)
        done = step + 1
        evaluated = None
        if heldout_data is not None and config.eval_every and done % config.eval_every == 0 and done < total_steps:
            evaluated = run_heldout(done)
        if progress is not None and accelerator.is_main_process and (done % config.log_every == 0 or done == total_steps):
            progress(TrainProgress(done, total_steps, step_loss, lr, epoch, samples, time.perf_counter() - start, evaluated))
    seconds = time.perf_counter() - start
    model.eval()
    final = run_heldout(total_steps)
    if final is not None and progress is not None and accelerator.is_main_process:
        progress(TrainProgress(total_steps, total_steps, losses[-1], lrs[-1], epoch, samples, seconds, final))

    tail = losses[-max(1, len(losses) // 10) :]
    result = TrainResult(
        output_dir=out_dir,
        mode=config.mode,
        steps=total_steps,
        samples=samples,
        final_loss=sum(tail) / len(tail),
        samples_per_s=samples / seconds if seconds > 0 else float("nan"),
        seconds=seconds,
        losses=losses,
        lrs=lrs,
        heldout=heldout,
        trainable_parameters=trainable,
        total_parameters=total,
        backbone=backbone,
        main_process=accelerator.is_main_process,
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save(backbone, config, result, base_path)
    accelerator.wait_for_everyone()
    return result


def _forever(loader: Any) -> Iterator[tuple[float, dict[str, Any]]]:
    """Batches across epochs (a fresh shuffle each), with the fractional epoch they belong to."""
    n = len(loader)
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            yield epoch + (i + 1) / n, batch
        epoch += 1


def _param_groups(model: "torch.nn.Module", weight_decay: float) -> list[dict[str, Any]]:
    # As nanoGPT: decay matrices (weights of linear layers, embeddings), never biases or norms.
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    rest = [p for p in trainable if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _save(backbone: QAlignBackbone, config: TrainConfig, result: TrainResult, base_path: Path) -> None:
    import transformers

    record = {
        "base_model": str(config.model),
        "base_model_path": str(base_path.resolve()),
        "config": config.to_dict(),
        "result": result.to_dict(),
        "transformers": transformers.__version__,
    }
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        with atomic_output_dir(result.output_dir) as tmp:
            # LoRA: a PEFT model saves only the adapter (and any fully trained modules).
            backbone.model.save_pretrained(tmp)
            if config.mode == "full":
                processor = getattr(backbone, "processor", None)
                if hasattr(processor, "save_pretrained"):
                    processor.save_pretrained(tmp)
                # Tokenizer and preprocessing files the backbone cannot write itself (OneAlign's
                # processor, for one) come unchanged from the base model folder.
                copy_auxiliary_files(base_path, tmp)
            write_record(tmp, record)
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
