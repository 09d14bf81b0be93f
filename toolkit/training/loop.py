"""The training loop: a plain loop over the backbone interface.

Deliberately small and readable (in the spirit of nanoGPT rather than the HF ``Trainer``): load
data and backbone, choose what trains (LoRA or everything), then for each optimizer step run
``grad_accum`` micro-batches, clip, step, schedule the learning rate; evaluate, checkpoint and
keep the best model along the way. ``accelerate`` places the model and batches on the device
and makes the same loop run under ``accelerate launch`` on several GPUs and nodes (DDP or
DeepSpeed ZeRO-3, see ``configs/``); on one CPU it is a no-op.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from toolkit.models.base import QAlignBackbone, SavesPretrained
from toolkit.models.dtypes import AUTO, MIXED_PRECISION, canonical_dtype
from toolkit.training.checkpoint import SkippedCheckpoint, TrainState, is_deepspeed, resume_checkpoint, save_checkpoint
from toolkit.training.config import TrainConfig
from toolkit.training.data import TrainingData, check_targets, load_training_data
from toolkit.training.heldout import HeldOutResult, evaluate_heldout
from toolkit.training.lora import count_parameters, model_type_of, prepare_trainable
from toolkit.training.losses import Collate, get_loss
from toolkit.training.mixing import MixedTrainingData, MixtureSampler
from toolkit.training.output import (
    BEST_DIR,
    CHECKPOINTS_DIR,
    RECORD_NAME,
    check_output_dir,
    copy_auxiliary_files,
    publish_dir,
    replace_dir,
    staging_dir,
    write_record,
)
from toolkit.training.precision import HalvedWeights, hold_frozen_weights_in_16bit
from toolkit.training.predict import Method
from toolkit.training.recipes import ONEALIGN_MODEL_TYPE, check_recipe_fits
from toolkit.training.schedule import warmup_cosine, warmup_steps_for

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

    from toolkit.models.base import TrainingExample


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
    checkpoint: Path | None = None  # set on steps that wrote a checkpoint


@dataclass
class TrainResult:
    output_dir: Path
    mode: str
    steps: int
    samples: int
    final_loss: float  # mean loss of the last tenth of the steps (at least one)
    samples_per_s: float  # training samples per second, all processes together
    seconds: float  # training loop wall time, evaluations and checkpoints included (loading and the final save
    # excluded; a resumed run adds its time to the checkpoint's)
    losses: list[float]  # one per optimizer step
    lrs: list[float]
    heldout: list[HeldOutResult] = field(default_factory=list)
    trainable_parameters: int = 0
    total_parameters: int = 0
    backbone: QAlignBackbone | None = field(default=None, repr=False, compare=False)  # the trained model
    main_process: bool = True  # False in the other processes of a multi-process run
    best: dict[str, Any] | None = None  # {"step", "metric", "value"} of the model copied to out/best
    resumed_from: str | None = None  # the checkpoint this run continued from
    # Newer checkpoints a resumed run passed over as damaged: {"checkpoint", "reason"}, newest first.
    resume_skipped: list[dict[str, str]] = field(default_factory=list)
    draws: list[int] = field(default_factory=list)  # examples drawn from each training data set

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("backbone", "heldout", "main_process")}
        d["output_dir"] = str(self.output_dir)
        d["heldout"] = [h.to_dict() for h in self.heldout]
        return d


def train(
    config: TrainConfig,
    progress: Callable[[TrainProgress], None] | None = None,
    backbone: QAlignBackbone | None = None,
) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` and save the adapter (or model) to ``config.out``.

    ``backbone``: the model of ``config.model`` already in memory (float32 weights), trained
    in place instead of being loaded again; ``config.model`` still provides the tokenizer,
    processor and config files written beside the result.
    """
    import torch

    threads = torch.get_num_threads()
    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _train(config, progress, backbone)
    finally:
        torch.set_num_threads(threads)


def load_run_data(config: TrainConfig) -> tuple[MixedTrainingData, TrainingData | None]:
    """The training data sets (as one mixture) and the held-out set, in the form the loss needs."""
    parts = [
        load_training_data(p, root, config.split, config.max_frames)
        for p, root in zip(config.data_paths, config.image_roots)
    ]
    heldout = (
        load_training_data(config.eval_data, config.eval_images, config.split, config.max_frames)
        if config.eval_data
        else None
    )
    for part in parts:
        check_targets(part, config.loss)  # before the score loss rewrites the answers
    if config.loss == "score":
        if heldout is not None:
            check_targets(heldout, config.loss)
        parts = [p.with_score_answers() for p in parts]
        heldout = heldout.with_score_answers() if heldout is not None else None
    return MixedTrainingData(parts), heldout


def _mixed_precision(dtype: str, device: torch.device) -> str:
    import torch

    name = canonical_dtype(dtype, allow_auto=True)
    if name == AUTO:
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    return MIXED_PRECISION[name]


@dataclass
class _Run:
    """What one run holds between setup and finish: the prepared objects and the progress so far."""

    config: TrainConfig
    progress: Callable[[TrainProgress], None] | None
    accelerator: Accelerator
    backbone: QAlignBackbone  # its ``model`` is the unwrapped model, saved and returned
    model: torch.nn.Module  # the model as ``prepare`` wrapped it (DDP, DeepSpeed): the one to run
    optimizer: torch.optim.Optimizer
    loader: Any
    sampler: MixtureSampler
    params: list[torch.nn.Parameter]  # what trains, for gradient clipping
    loss_fn: Callable[..., torch.Tensor]
    heldout_data: TrainingData | None
    base_path: Path
    out_dir: Path
    total_steps: int
    warmup: int
    method: Method  # how the held-out set is scored: by level logits, or by written answers (score loss)
    trainable: int
    total: int
    halved: HalvedWeights  # undone when the run ends, however it ends
    state: TrainState  # everything a checkpoint saves
    resumed: Path | None = None
    skipped: list[SkippedCheckpoint] = field(default_factory=list)  # damaged checkpoints passed over
    epoch: float = 0.0  # fractional epoch of the last batch drawn


def _train(
    config: TrainConfig, progress: Callable[[TrainProgress], None] | None, loaded: QAlignBackbone | None
) -> TrainResult:
    """Set up, take the optimizer steps (each followed by any evaluation, checkpoint and progress
    report it is due), then evaluate and save the final model."""
    run = _setup(config, progress, loaded)
    try:
        if run.resumed is None:
            _evaluate(run, 0)  # the starting point of the held-out curve
        run.model.train()
        batches = _batches(run.loader, run.sampler, run.state)
        run.epoch = run.state.epoch + run.state.batch_in_epoch / max(1, len(run.loader))
        start = time.perf_counter() - run.state.seconds  # a resumed run adds to the checkpoint's time
        for step in range(run.state.step, run.total_steps):
            loss, lr = _step(run, step, batches)
            run.state.seconds = time.perf_counter() - start
            _after_step(run, loss, lr)
        return _finish(run)
    finally:
        run.halved.restore()  # the returned model (or the caller's, after a failure) is float32 again


def _setup(
    config: TrainConfig, progress: Callable[[TrainProgress], None] | None, loaded: QAlignBackbone | None
) -> _Run:
    """Data, accelerator, backbone, optimizer and loader, and the state to start from (a fresh
    one, or the latest checkpoint's when resuming)."""
    import torch
    from accelerate.utils import GradientAccumulationPlugin, set_seed

    from toolkit.models.loading import resolve_device, resolve_model_path, set_video_input
    from toolkit.models.tiny import is_untrained_tiny_model

    config.validate()
    out_dir = check_output_dir(config.out)
    data, heldout_data = load_run_data(config)
    device = resolve_device(config.device)  # fails early on a device this machine lacks
    accelerator = _accelerator(
        cpu=device.type == "cpu",
        mixed_precision=_mixed_precision(config.dtype, device),
        # Optimizer steps are counted by the loop, not by passes over the data: an accumulation
        # window may span the end of an epoch.
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.grad_accum, sync_with_dataloader=False
        ),
    )
    set_seed(config.seed)  # before the adapters are initialised

    base_path = resolve_model_path(config.model)
    if config.mode == "lora" and is_untrained_tiny_model(base_path):
        warnings.warn(
            f"{base_path} is the randomly initialised tiny demonstration model: LoRA on random weights "
            "learns next to nothing; train it with mode 'full' (--mode full)",
            stacklevel=3,
        )
    backbone = loaded if loaded is not None else _load_backbone(base_path, accelerator)
    check_recipe_fits(config.recipe, model_type_of(backbone.model))
    set_video_input(backbone, as_frames=config.video_as_frames)  # native where the model reads videos so
    backbone.model = prepare_trainable(backbone.model, config)
    halved = _hold_frozen_weights_in_16bit(backbone.model, accelerator, config.mode)
    try:
        trainable, total = count_parameters(backbone.model)
        params = [p for p in backbone.model.parameters() if p.requires_grad]
        if config.num_workers > 0:
            # Forked workers must not use the tokenizer's own thread pool (it warns, then disables it).
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        optimizer = torch.optim.AdamW(_param_groups(backbone.model, config.weight_decay), lr=config.learning_rate)
        sampler = MixtureSampler(data.sizes, config.weights, config.seed)
        loader: torch.utils.data.DataLoader[TrainingExample] = torch.utils.data.DataLoader(
            # torch annotates Dataset, but any sequence is a map-style dataset; this one of TrainingExample.
            data,  # type: ignore[arg-type]
            batch_size=config.batch_size,
            sampler=sampler,
            collate_fn=Collate(backbone, config.loss),
            # Worker seeds come from this generator, not from the global one that a resumed run restores.
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
        state = TrainState(num_processes=accelerator.num_processes, draws=[0] * len(data.parts))
        resumed: Path | None = None
        skipped: list[SkippedCheckpoint] = []
        if config.resume:
            # Also restores the RNG states; damaged newer checkpoints are passed over, with a warning.
            resumed, saved, skipped = resume_checkpoint(out_dir, accelerator, model, optimizer, config)
            state = saved if saved is not None else state
            if skipped:  # with no intact checkpoint at all, resume_checkpoint has raised
                passed = "; ".join(f"{s.checkpoint} ({s.reason})" for s in skipped)
                warnings.warn(f"resuming from {resumed}, the newest intact checkpoint; skipped {passed}", stacklevel=3)
        if resumed is None and accelerator.is_main_process:
            _clear_previous_run(out_dir)  # a fresh run replaces the earlier one's checkpoints and best model
        accelerator.wait_for_everyone()
    except BaseException:
        halved.restore()  # the caller's model is float32 again after a failed setup
        raise
    return _Run(
        config=config,
        progress=progress,
        accelerator=accelerator,
        backbone=backbone,
        model=model,
        optimizer=optimizer,
        loader=loader,
        sampler=sampler,
        params=params,
        loss_fn=loss_fn,
        heldout_data=heldout_data,
        base_path=base_path,
        out_dir=out_dir,
        total_steps=total_steps,
        warmup=warmup_steps_for(total_steps, config.warmup_ratio),
        method="generate" if config.loss == "score" else "levels",
        trainable=trainable,
        total=total,
        halved=halved,
        state=state,
        resumed=resumed,
        skipped=skipped,
    )


def _step(run: _Run, step: int, batches: Iterator[tuple[float, dict[str, Any]]]) -> tuple[float, float]:
    """One optimizer step (0-based ``step``) over ``grad_accum`` micro-batches; its loss
    (mean over micro-batches and processes) and learning rate."""
    import torch

    config, accelerator, state = run.config, run.accelerator, run.state
    lr = config.learning_rate * warmup_cosine(step, run.total_steps, run.warmup)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    micro_losses = []
    draws = torch.zeros(len(state.draws), dtype=torch.long, device=accelerator.device)
    for _ in range(config.grad_accum):
        run.epoch, batch = next(batches)
        # accumulate(): no gradient all-reduce but on the last micro-batch; backward() divides
        # the loss by grad_accum (DeepSpeed does both itself).
        with accelerator.accumulate(run.model):
            loss = run.loss_fn(run.model, run.backbone, batch)
            accelerator.backward(loss)
        micro_losses.append(loss.detach())
        draws += torch.bincount(batch["target_dataset"].to(draws.device), minlength=len(state.draws))
        state.samples += int(batch["input_ids"].shape[0]) * accelerator.num_processes
    if config.max_grad_norm > 0:
        accelerator.clip_grad_norm_(run.params, config.max_grad_norm)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)

    step_loss = float(accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean"))
    state.losses.append(step_loss)
    state.lrs.append(lr)
    state.draws = [a + int(b) for a, b in zip(state.draws, accelerator.reduce(draws, reduction="sum").tolist())]
    state.step = step + 1
    return step_loss, lr


def _after_step(run: _Run, loss: float, lr: float) -> None:
    """Evaluate, checkpoint and report as the settings ask after a finished step. The last step
    does neither of the first two: :func:`_finish` evaluates and saves the final model."""
    config, state = run.config, run.state
    done, total_steps = state.step, run.total_steps
    save = bool(config.save_every) and done % config.save_every == 0 and done < total_steps
    evaluate = (
        run.heldout_data is not None
        and done < total_steps
        and (save or (config.eval_every > 0 and done % config.eval_every == 0))
    )
    evaluated = _evaluate(run, done) if evaluate else None
    checkpoint = None
    if save:
        checkpoint = save_checkpoint(
            run.accelerator, run.model, run.optimizer, state, config, run.out_dir, config.keep_checkpoints
        )
    if (
        run.progress is not None
        and run.accelerator.is_main_process
        and (done % config.log_every == 0 or done == total_steps or evaluated is not None or checkpoint is not None)
    ):
        run.progress(
            TrainProgress(done, total_steps, loss, lr, run.epoch, state.samples, state.seconds, evaluated, checkpoint)
        )


def _finish(run: _Run) -> TrainResult:
    """The final evaluation, the result, and the adapter (or model) with its record in the output folder."""
    config, accelerator, state = run.config, run.accelerator, run.state
    run.model.eval()
    final = _evaluate(run, run.total_steps)
    if final is not None and run.progress is not None and accelerator.is_main_process:
        run.progress(
            TrainProgress(
                run.total_steps,
                run.total_steps,
                state.losses[-1],
                state.lrs[-1],
                run.epoch,
                state.samples,
                state.seconds,
                final,
            )
        )

    tail = state.losses[-max(1, len(state.losses) // 10) :]
    result = TrainResult(
        output_dir=run.out_dir,
        mode=config.mode,
        steps=run.total_steps,
        samples=state.samples,
        final_loss=sum(tail) / len(tail),
        samples_per_s=state.samples / state.seconds if state.seconds > 0 else float("nan"),
        seconds=state.seconds,
        losses=list(state.losses),
        lrs=list(state.lrs),
        heldout=[HeldOutResult(**h) for h in state.heldout],
        trainable_parameters=run.trainable,
        total_parameters=run.total,
        backbone=run.backbone,
        main_process=accelerator.is_main_process,
        best=state.best,
        resumed_from=str(run.resumed) if run.resumed is not None else None,
        resume_skipped=[s.to_dict() for s in run.skipped],
        draws=list(state.draws),
    )
    _write_model(run, run.out_dir, _record(run, result.to_dict()), whole=False)
    return result


def _evaluate(run: _Run, step: int) -> HeldOutResult | None:
    """Score the held-out set (if any) after ``step`` steps, record it, and keep the model in
    ``out/best`` when it is the best so far (not the untrained model of step 0)."""
    if run.heldout_data is None:
        return None
    result = evaluate_heldout(
        run.backbone, run.heldout_data, run.config.eval_batch_size, step, run.accelerator.autocast, run.method
    )
    run.state.heldout.append(result.to_dict())
    if step > 0:
        _keep_if_best(run, result)
    return result


def _hold_frozen_weights_in_16bit(model: torch.nn.Module, accelerator: Accelerator, mode: str) -> HalvedWeights:
    """The frozen base model of a LoRA run in 16 bits when every forward runs under 16-bit
    autocast (see :mod:`toolkit.training.precision`). Not in full mode, whose saved model must
    stay float32 throughout (and whose frozen parts are small), nor under DeepSpeed or FSDP,
    which manage parameter storage themselves."""
    from accelerate.utils import DistributedType

    plain = accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU)
    if mode != "lora" or not plain or accelerator.mixed_precision not in ("bf16", "fp16"):
        return HalvedWeights()
    return hold_frozen_weights_in_16bit(model)


def _accelerator(**kwargs: Any) -> Accelerator:
    """An ``Accelerator``; in a single process, also after an earlier run with another precision.

    accelerate keeps one process-wide state and refuses a second ``Accelerator`` with other
    settings. A launched multi-process run trains once per process, but a notebook or a script
    that calls ``train()`` with bf16 after float32 would fail; there the state is reset.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    try:
        return Accelerator(**kwargs)
    except ValueError as exc:
        if "already been initialized" not in str(exc) or PartialState().num_processes != 1:
            raise
        AcceleratorState._reset_state(reset_partial_state=True)
        return Accelerator(**kwargs)


def _load_backbone(base_path: Path, accelerator: Accelerator) -> QAlignBackbone:
    """The backbone with float32 master weights on the CPU (``prepare`` moves it).

    Under DeepSpeed ZeRO-3 the model must be built without a device map, so that transformers
    partitions the weights over the processes while loading instead of loading them whole in
    every process.
    """
    from toolkit.models.loading import load_backbone, model_type

    if _zero3(accelerator) and model_type(base_path) == ONEALIGN_MODEL_TYPE:
        import torch

        from toolkit.models.onealign import MPLUGOwl2LlamaForCausalLM, OneAlignBackbone, OneAlignProcessor

        net = MPLUGOwl2LlamaForCausalLM.from_pretrained(str(base_path), dtype=torch.float32)
        return OneAlignBackbone(net, OneAlignProcessor.from_pretrained(base_path))
    return load_backbone(base_path, dtype="float32", device="cpu")


def _zero3(accelerator: Accelerator) -> bool:
    if not is_deepspeed(accelerator):
        return False
    return int(accelerator.state.deepspeed_plugin.zero_stage) == 3


def _batches(loader: Any, sampler: MixtureSampler, state: TrainState) -> Iterator[tuple[float, dict[str, Any]]]:
    """Batches across epochs with the fractional epoch they belong to; ``state`` tracks the
    position (a resumed run skips the consumed batches of its epoch without loading them)."""
    from accelerate import skip_first_batches

    n = len(loader)
    while True:
        source = skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        # accelerate's loaders set the sampler's epoch from their own counter at every pass (when
        # they reach it through their wrappers: not through a skipping loader on several
        # processes); setting both keeps the order a function of the epoch alone.
        if hasattr(source, "set_epoch"):
            source.set_epoch(state.epoch)
        sampler.set_epoch(state.epoch)
        for batch in source:
            state.batch_in_epoch += 1
            yield state.epoch + state.batch_in_epoch / n, batch
        state.epoch += 1
        state.batch_in_epoch = 0


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # As nanoGPT: decay matrices (weights of linear layers, embeddings), never biases or norms.
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2]
    rest = [p for p in trainable if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _clear_previous_run(out_dir: Path) -> None:
    for name in (CHECKPOINTS_DIR, BEST_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)


def _is_better(result: HeldOutResult, best: dict[str, Any] | None, metric: str) -> tuple[bool, str, float] | None:
    """Whether ``result`` beats the best so far on ``metric`` (SRCC/PLCC: higher; loss: lower).
    Falls back to the loss when the correlation is undefined."""
    value = result.metric(metric)
    if value is None:
        metric, value = "loss", result.loss
    if best is not None and best["metric"] == metric:
        better = value < best["value"] if metric == "loss" else value > best["value"]
    else:
        better = best is None
    return (better, metric, float(value)) if better else None


def _keep_if_best(run: _Run, result: HeldOutResult) -> None:
    """Copy the model to ``out/best`` when this evaluation is the best so far."""
    state, config = run.state, run.config
    verdict = _is_better(result, state.best, config.best_metric)
    if verdict is None:
        return
    _, metric, value = verdict
    state.best = {"step": result.step, "metric": metric, "value": value}
    record = _record(run, {"step": result.step, "heldout": result.to_dict(), "best": state.best})
    _write_model(run, run.out_dir / BEST_DIR, record, whole=True)


def _record(run: _Run, result: dict[str, Any]) -> dict[str, Any]:
    import transformers

    from toolkit.models.loading import video_input_of

    return {
        "base_model": str(run.config.model),
        "base_model_path": str(run.base_path.resolve()),
        "config": run.config.to_dict(),
        "result": result,
        "transformers": transformers.__version__,
        # How videos went to the model ("native" or "frames"): score them the same way.
        "video_input": video_input_of(run.backbone),
    }


def _write_model(run: _Run, target: Path, record: dict[str, Any], whole: bool) -> None:
    """Save the adapter (LoRA) or model (full) with its record to ``target``; every process
    must call it (ZeRO-3 gathers the sharded weights first). ``whole``: swap the folder as a
    whole; else replace the top-level files and keep ``checkpoints/`` and ``best/``."""
    import transformers

    accelerator, backbone = run.accelerator, run.backbone
    state_dict = accelerator.get_state_dict(run.model) if _zero3(accelerator) else None
    if accelerator.is_main_process:
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()
        staged = staging_dir(target)
        try:
            # LoRA: a PEFT model saves only the adapter (and any fully trained modules).
            # ``model`` is declared as a plain module (wrappers replace it); it is a transformers or PEFT model.
            cast(SavesPretrained, backbone.model).save_pretrained(staged, state_dict=state_dict)
            if run.config.mode == "full":
                processor = getattr(backbone, "processor", None)
                if processor is not None and hasattr(processor, "save_pretrained"):
                    processor.save_pretrained(staged)
                # Tokenizer and preprocessing files the backbone cannot write itself (OneAlign's
                # processor, for one) come unchanged from the base model folder.
                copy_auxiliary_files(run.base_path, staged)
            write_record(staged, record, data_sizes=run.sampler.sizes)
            if whole:
                replace_dir(staged, target)
            else:
                publish_dir(staged, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            if bars:
                transformers.utils.logging.enable_progress_bar()
    accelerator.wait_for_everyone()


__all__ = ["RECORD_NAME", "TrainProgress", "TrainResult", "load_run_data", "train"]
