"""The Q-Align scorer: decoded inputs in, level probabilities and 1-5 scores out.

For each input the backbone gives the logits of the five level words at the answer position;
a softmax over those five only (the close-set softmax of Q-Align) is the predicted level
distribution, its expectation with weights 5..1 is the score and its entropy the uncertainty.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.models.base import QAlignBackbone, Visual
from toolkit.qalign import (
    INPUT_KINDS,
    LEVELS,
    InputKind,
    Task,
    check_kind,
    check_task,
    level_softmax,
    scoring_question,
)
from toolkit.scoring.decode import detach_preprocessing
from toolkit.scoring.inputs import InputPlan, ScoreInput, plan_inputs
from toolkit.scoring.processes import ProcessGroup, current_processes, resolve_device
from toolkit.scoring.provenance import ModelIdentity, Provenance, refuse_early
from toolkit.scoring.results import (
    FrameCounts,
    ResultAppender,
    ResultFile,
    ScoredChunk,
    chunks_to_frame,
    empty_results,
    merge_results,
    part_path,
)
from toolkit.scoring.sources import ItemVisuals, Piece, SampleStream, StreamBatch, StreamCollate

if TYPE_CHECKING:
    import torch

    from toolkit.models.loading import VideoInput
    from toolkit.scoring.compile import SpeedReport

log = logging.getLogger(__name__)


def _checked_probabilities(logits: torch.Tensor, n: int) -> np.ndarray:
    # Checked here as well as in level_softmax: a backbone bug shows as the whole wrong shape
    # against the batch it was given, which a check of the last axis alone would not name.
    expected = (n, len(LEVELS))
    if tuple(logits.shape) != expected:
        raise InputError(f"backbone returned level logits of shape {tuple(logits.shape)}, expected {expected}")
    return level_softmax(logits)


@dataclass
class _ScoreRun:
    """One :meth:`Scorer.score` call: its settings and what it learns while scoring. Kept off
    the ``Scorer`` so that calls on one scorer never see each other's state."""

    pieces: list[Piece]  # this process's inputs still to score: blocks of files and whole shards
    skip: set[str]  # keys already scored, passed over inside the shards
    total: int  # inputs still to score (for the progress bar)
    task: Task
    batch_size: int
    num_workers: int
    max_frames: int | None
    show: bool  # a progress bar
    with_gt: bool  # rows carry ``gt_score``
    appender: ResultAppender | None = None  # where finished chunks go as they come
    notes: dict[str, str] = field(default_factory=dict)  # path -> remark (e.g. a thinned video)
    frames: FrameCounts = field(default_factory=dict)  # scored videos: path -> (decoded, sampled)
    any_success: bool = False  # a forward has worked: later failures are bad inputs, not a broken setup


class Scorer:
    """Scores files with one loaded backbone; reuse it for many calls without reloading.

    >>> scorer = Scorer(load_backbone("tiny"))          # doctest: +SKIP
    >>> df = scorer.score(["photos/"], task="quality")  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: QAlignBackbone,
        batch_size: int = 8,
        num_workers: int | None = 0,
        max_frames: int | None = None,
        progress: bool = True,
        identity: ModelIdentity | None = None,
    ) -> None:
        self.backbone = backbone
        self.batch_size = _positive("batch_size", batch_size)
        # None: as many decoding workers as suit the device (see auto_num_workers).
        self.num_workers = (
            auto_num_workers(backbone.device) if num_workers is None else _non_negative("num_workers", num_workers)
        )
        self.max_frames = None if max_frames is None else _positive("max_frames", max_frames)
        self.progress = progress
        # What an output file records about the weights; from_pretrained knows the files.
        self.identity = identity or ModelIdentity.of_backbone(backbone)
        # What the speed switches did (from_pretrained with attention/compile_mode), else None.
        self.speed: SpeedReport | None = None

    @classmethod
    def from_pretrained(
        cls,
        model: str = "tiny",
        adapter: str | None = None,
        dtype: str = "float32",
        device: str = "cpu",
        video_as_frames: bool = False,
        attention: str | None = None,
        compile_mode: str = "off",
        **kwargs: object,
    ) -> Scorer:
        """Load ``model`` (a folder, a hub id or ``"tiny"``) with an optional adapter. Videos go to
        the model as videos where its family reads them so (the Qwen-VL models, SmolVLM2, InternVL,
        LLaVA-OneVision), else, or with ``video_as_frames``, as their frames; score with the mode the
        model was fine-tuned with.

        ``attention`` and ``compile_mode`` are the speed switches of
        :func:`toolkit.scoring.compile.apply_speed_options` (the numbers stay within float rounding);
        a compiled image path is warmed up at the batch size before the first batch."""
        from toolkit.models.loading import load_backbone, set_video_input
        from toolkit.scoring.compile import apply_speed_options, check_speed_names

        check_speed_names(attention, compile_mode)

        # The place among the processes from the environment alone: joining a process group is
        # the scoring run's business (a run that never merges joins none).
        group = current_processes(collective=False)
        backbone = load_backbone(model, adapter, dtype, resolve_device(device, group))
        set_video_input(backbone, as_frames=video_as_frames)
        speed = None
        if attention is not None or compile_mode != "off":
            batch = kwargs.get("batch_size")
            speed = apply_speed_options(
                backbone, attention, compile_mode, warmup=batch if isinstance(batch, int) else None
            )
        kwargs.setdefault("identity", ModelIdentity.of_files(model, adapter, backbone))
        scorer = cls(backbone, **kwargs)  # type: ignore[arg-type]
        scorer.speed = speed
        return scorer

    def provenance(self, task: Task, video: bool, max_frames: int | None) -> Provenance:
        """What decides the numbers of a run with these settings (recorded beside an output)."""
        from toolkit import __version__

        kind: InputKind = "video" if video else "image"
        first = next(iter(self.backbone.model.parameters()), None)
        dtype = first.dtype if first is not None else "unknown"
        return Provenance(
            model=self.identity.model,
            model_fingerprint=self.identity.model_fingerprint,
            adapter=self.identity.adapter,
            adapter_fingerprint=self.identity.adapter_fingerprint,
            task=task,
            input_kind=kind,
            dtype=str(dtype).removeprefix("torch."),
            question=scoring_question(task, kind),
            max_frames=max_frames if video else None,
            toolkit_version=__version__,
            video_input=self.video_input if video else None,
        )

    @property
    def video_input(self) -> VideoInput:
        """How this scorer gives videos to the model: ``"native"`` (as videos) or ``"frames"``."""
        from toolkit.models.loading import video_input_of

        return video_input_of(self.backbone)

    # ------------------------------------------------------------------ in memory

    def level_probs(self, visuals: Sequence[Visual], task: Task = "quality", kind: InputKind = "image") -> np.ndarray:
        """Level distributions (n, 5) of in-memory visuals (each a list of RGB frames), one forward.

        A video's frames say when they were taken as :class:`toolkit.media.TimedFrames` (what the
        loader gives); plain frames are taken to be one second apart."""
        check_task(task)
        check_kind(kind)
        return self._batch_probs(self.backbone.scoring_batch(visuals, task, kind), len(visuals))

    def _batch_probs(self, batch: dict, n: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return _checked_probabilities(self.backbone.level_logits(batch), n)

    # ------------------------------------------------------------------ files

    def score(
        self,
        inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
        task: Task = "quality",
        video: bool = False,
        out: str | os.PathLike[str] | None = None,
        batch_size: int | None = None,
        num_workers: int | None = None,
        max_frames: int | None = None,
        progress: bool | None = None,
        processes: ProcessGroup | None = None,
        image_column: str = "image",
        id_column: str | None = None,
        merge: bool = True,
    ) -> pd.DataFrame:
        """Score files, folders, manifests and shards; one row per input, in input order.

        With ``out``, rows are appended to that CSV chunk by chunk as they are computed, inputs
        already scored there are skipped (rows with an error are retried), and at the end the
        file is rewritten with one row per path, the current inputs first in input order.
        ``<out>.qalign.json`` records the model, adapter, task, input kind, dtype, question and
        frame cap of the rows; an existing file made otherwise (or without that record) raises
        :class:`InputError` instead of being resumed. ``df.attrs["frames"]`` maps each scored
        video to (frames decoded, frames its sampling asked for), also kept in ``<out>.frames.csv``;
        fewer decoded means a truncated or damaged file scored from the frames before the damage.
        Under several processes (``accelerate launch``, ``torchrun``) each process scores its share
        (a block of the files and a block of whole shards) into its part ``<out>.partRRR-of-WWW``;
        the main process merges the parts and returns the whole table, the others their own rows.
        With ``merge=False`` no process group is joined and nobody waits: each process returns
        its own rows once its part is complete, and :func:`toolkit.scoring.shards.merge_scores`
        joins the parts later. ``df.attrs["notes"]`` maps paths to remarks such as a video
        subsampled to ``max_frames`` (this process's inputs); ``df.attrs["main_process"]`` says
        whether the table is the whole result, ``df.attrs["part"]`` names the part otherwise;
        ``df.attrs["video_input"]`` says how videos were given (``native`` or ``frames``).
        Shards are read as streams (see :mod:`toolkit.scoring.sources`; ``image_column`` and
        ``id_column`` name the columns of table shards).
        """
        task = check_task(task)
        plan = plan_inputs(inputs, video, image_column, id_column)
        group = processes or current_processes(collective=merge)
        merge = merge or group.world == 1
        bs = self.batch_size if batch_size is None else _positive("batch_size", batch_size)
        workers = self.num_workers if num_workers is None else _non_negative("num_workers", num_workers)
        cap = self.max_frames if max_frames is None else _positive("max_frames", max_frames)
        show = self.progress if progress is None else progress
        mode = self.video_input if video else None
        with_gt = any(it.gt_score is not None for it in plan.files)
        # Split the full input list, not what is left of it: the shares then never depend on
        # when each process happened to read the files another one is already appending to.
        share = plan.share(group.rank, group.world)
        mine = share.keys()  # this process's shards are listed (headers, ids) before scoring

        output = ResultFile(out) if out is not None else None
        done: set[str] = set()
        if output is not None:
            output.claim(self.provenance(task, video, cap), group.is_main)
            group.barrier()  # no process appends before every one has judged the file as it was
            previous = output.previous(set(mine))
            done, with_gt = previous.done, with_gt or previous.with_gt
        if done:
            log.info("resuming: %d input(s) already scored", len(done))
        todo = sum(1 for key in mine if key not in done)
        run = _ScoreRun(_pieces(share, done, bs), done, todo, task, bs, workers, cap, show and group.is_main, with_gt)
        if output is not None:
            run.appender = output.appender(group.rank, group.world, with_gt)
        rows = self._run(run)

        if not merge:  # several processes, none waiting for the others: this one's share only
            part = None if out is None else str(part_path(Path(out), group.rank, group.world))
            return _with_notes(rows, run.notes, run.frames, group, mode, whole=False, part=part)
        # Every key in input order: the main process lists the shards of the other processes too.
        order = mine if group.world == 1 else (plan.keys() if group.is_main else [])
        if output is None:
            parts = group.gather_objects(rows)
            frame_parts = group.gather_objects(run.frames)
            result = _in_order(merge_results(parts, order), order) if group.is_main else rows
            frames = {p: c for f in frame_parts for p, c in f.items()} if group.is_main else run.frames
            return _with_notes(result, run.notes, frames, group, mode)
        group.barrier()  # every part is complete before the main process merges
        frames = run.frames
        missing: list[str] = []
        if group.is_main:
            merged = output.merge(order, with_gt)
            present = set(merged["path"])
            missing = [key for key in order if key not in present]
            result = _in_order(merged, [key for key in order if key in present])
            frames = output.frame_counts()  # this run's processes and the rows resumed from
        else:
            result = rows
        group.barrier()  # nobody leaves (and, say, reads the output) before the merge is done
        if missing:
            # Parts the main process cannot see: written on another node's own disk.
            raise InputError(
                f"{len(missing)} input(s) have no row in {output.path} (first: {missing[0]}): the parts of the"
                " other processes are not beside it; put --out on a file system every node shares, or copy"
                " their parts beside it and run again with --merge-only"
            )
        wanted = set(result["path"])
        return _with_notes(result, run.notes, {p: c for p, c in frames.items() if p in wanted}, group, mode)

    def _run(self, run: _ScoreRun) -> pd.DataFrame:
        from torch.utils.data import DataLoader
        from tqdm.auto import tqdm

        if not run.pieces:
            return empty_results(run.with_gt)
        preparer = self.backbone if run.num_workers == 0 else detach_preprocessing(self.backbone)
        loader = DataLoader(
            SampleStream(run.pieces, run.skip, run.max_frames),
            batch_size=run.batch_size,
            num_workers=run.num_workers,
            collate_fn=StreamCollate(preparer, run.task),
            # Workers decode and preprocess the next batches while the model runs on this one.
            prefetch_factor=2 if run.num_workers > 0 else None,
            # Page-locked batches copy to a GPU without stopping the host.
            pin_memory=self.backbone.device.type == "cuda",
        )
        chunks: list[ScoredChunk] = []
        with tqdm(total=run.total, desc=f"scoring {run.task}", unit="input", disable=not run.show) as bar:

            def finish(launched: _LaunchedBatch) -> None:
                chunk = self._collect(run, launched)
                items, decoded = launched.batch.items, launched.batch.prepared.decoded
                if run.with_gt:
                    chunk.gt_scores = [items[d.position].gt_score for d in decoded]
                chunk.frames = [d.frame_counts for d in decoded]
                run.frames.update(chunk.frame_counts())
                if run.appender is not None:
                    run.appender.append(chunk)
                chunks.append(chunk)
                bar.update(len(decoded))

            # One batch stays in flight: batch i+1 is queued on the device before the results
            # of batch i are read, so a GPU never waits while the host fetches, copies and
            # writes. (On a CPU the forward has finished when it returns; the order is the same.)
            pending: _LaunchedBatch | None = None
            try:
                for batch in loader:
                    launched = self._launch(run, batch)
                    done, pending = pending, launched
                    if done is not None:
                        finish(done)
            except BaseException:
                # Interrupted (Ctrl-C, a kill, a broken setup): the batch whose forward is
                # already on its way is still written, so a resumed run need not redo it.
                if pending is not None:
                    try:
                        finish(pending)
                    except Exception:
                        pass
                raise
            if pending is not None:
                finish(pending)
        return chunks_to_frame(chunks, run.with_gt)

    def _launch(self, run: _ScoreRun, batch: StreamBatch) -> _LaunchedBatch:
        """Queue the forwards of a batch (one per kind) without waiting for their results."""
        import torch

        items, decoded = batch.items, batch.prepared.decoded
        for d in decoded:
            if d.note:
                run.notes[items[d.position].path] = d.note
                log.info("%s: %s", items[d.position].path, d.note)
            if d.shortfall:
                log.warning("%s: %s", items[d.position].path, d.shortfall)
        launched = _LaunchedBatch(batch)
        # Group by kind so every forward has one prompt form (all images or all videos).
        for kind in INPUT_KINDS:
            idx = [i for i, d in enumerate(decoded) if d.usable and items[d.position].kind == kind]
            if not idx:
                continue
            ready = batch.prepared.prepared.get(kind)
            model_inputs = ready[1] if ready is not None and ready[0] == idx else None
            forward = _Forward(kind, idx, ItemVisuals([decoded[i] for i in idx], items, run.max_frames))
            try:
                if model_inputs is None:
                    model_inputs = self.backbone.transfer_batch(forward.visuals, run.task, kind)
                with torch.inference_mode():
                    logits = self.backbone.level_logits(model_inputs)
                if logits.is_cuda:
                    forward.logits = logits.to("cpu", non_blocking=True)
                    forward.ready = torch.cuda.Event()
                    forward.ready.record()
                else:
                    forward.logits = logits
            except Exception as exc:  # handled when the batch is collected, in input order
                forward.failure = exc
            launched.forwards.append(forward)
        return launched

    def _collect(self, run: _ScoreRun, launched: _LaunchedBatch) -> ScoredChunk:
        """Wait for a launched batch and turn it into rows; a failed forward is retried."""
        items, decoded = launched.batch.items, launched.batch.prepared.decoded
        probs = np.full((len(decoded), len(LEVELS)), np.nan)
        errors = [d.error or "" for d in decoded]
        for forward in launched.forwards:
            p, errs = self._forward_result(run, forward)
            probs[forward.idx] = p
            for i, e in zip(forward.idx, errs):
                if e:
                    errors[i] = f"{items[decoded[i].position].path}: {e}"
        return ScoredChunk([items[d.position].path for d in decoded], probs, errors)

    def _forward_result(self, run: _ScoreRun, forward: _Forward) -> tuple[np.ndarray, list[str]]:
        n = len(forward.visuals)
        failure = forward.failure
        if failure is None:
            try:
                if forward.ready is not None:
                    forward.ready.synchronize()
                assert forward.logits is not None
                p = _checked_probabilities(forward.logits, n)
                run.any_success = True
                return p, [""] * n
            except Exception as exc:  # e.g. a device error that surfaced only now
                failure = exc
        return self._retry(run, forward.visuals, forward.kind, failure)

    def _retry(
        self, run: _ScoreRun, visuals: Sequence[Visual], kind: InputKind, batch_exc: Exception
    ) -> tuple[np.ndarray, list[str]]:
        """After a failed batch, each visual alone, so one bad input cannot take the others down.

        A failure before anything ever succeeded is re-raised: that is a broken setup (device,
        dtype, model), not a bad file.
        """
        if len(visuals) == 1:
            if not run.any_success:
                raise batch_exc
            return np.full((1, len(LEVELS)), np.nan), [f"model failed: {type(batch_exc).__name__}: {batch_exc}"]
        log.warning("batch of %d failed (%s); retrying one at a time", len(visuals), batch_exc)
        out = np.full((len(visuals), len(LEVELS)), np.nan)
        errors = [""] * len(visuals)
        last_exc: Exception | None = None
        for i in range(len(visuals)):
            try:
                out[i] = self.level_probs([visuals[i]], run.task, kind)[0]
                run.any_success = True
            except Exception as exc:
                last_exc = exc
                errors[i] = f"model failed: {type(exc).__name__}: {exc}"
        if not run.any_success and last_exc is not None:
            raise last_exc
        return out, errors


@dataclass
class _Forward:
    """One queued forward: the inputs of one kind in a batch and where their logits will be."""

    kind: InputKind
    idx: list[int]  # positions within the batch
    visuals: ItemVisuals
    logits: torch.Tensor | None = None  # on the host once ``ready`` has fired
    ready: torch.cuda.Event | None = None
    failure: Exception | None = None


@dataclass
class _LaunchedBatch:
    batch: StreamBatch
    forwards: list[_Forward] = field(default_factory=list)


def auto_num_workers(device: torch.device | str) -> int:
    """Decoding workers for a device: none on a CPU (the model needs the cores), on a GPU most
    of this process's share of the cores (one H100 scores ~150-200 images/s; a worker decodes
    and prepares ~27 1024x768 JPEGs/s), leaving two for the main process and the pinning thread."""
    import torch

    if torch.device(device).type == "cpu":
        return 0
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(16, per_process - 2))


def _pieces(plan: InputPlan, done: set[str], size: int) -> list[Piece]:
    """The inputs of ``plan`` as decoding workers read them: files not yet scored in blocks of one
    batch, each shard whole (its scored samples are passed over as it is read)."""
    pieces: list[Piece] = []
    block: list[ScoreInput] = []
    for entry in plan.entries:
        if isinstance(entry, ScoreInput):
            if entry.path not in done:
                block.append(entry)
            if len(block) < size:
                continue
        if block:
            pieces.append(block)
            block = []
        if not isinstance(entry, ScoreInput):
            pieces.append(entry)
    if block:
        pieces.append(block)
    return pieces


def _with_notes(
    df: pd.DataFrame,
    notes: dict[str, str],
    frames: FrameCounts,
    group: ProcessGroup,
    video_input: VideoInput | None,
    whole: bool | None = None,
    part: str | None = None,
) -> pd.DataFrame:
    # What the run did besides scoring (e.g. videos thinned to max_frames), by path; these
    # are not errors and the CSV columns are fixed, so they travel in DataFrame.attrs.
    df.attrs["notes"] = dict(notes)
    # Scored videos: path -> (frames decoded, frames the sampling asked for); fewer decoded
    # means a truncated file scored from its beginning (also in <out>.frames.csv).
    df.attrs["frames"] = dict(frames)
    df.attrs["main_process"] = group.is_main if whole is None else whole  # False: one process's share
    df.attrs["part"] = part  # where that share was written, when no process merged the parts
    df.attrs["rank"] = (group.rank, group.world)
    df.attrs["video_input"] = video_input  # videos given as videos ("native") or as frames; None: images
    return df


def _in_order(df: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """The rows for ``order`` only, in that order."""
    return df.set_index("path").loc[list(order)].reset_index()


def _positive(name: str, value: int) -> int:
    if int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative(name: str, value: int) -> int:
    if int(value) != value or value < 0:
        raise InputError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def score_images(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    model: str = "tiny",
    adapter: str | None = None,
    task: Task = "quality",
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    num_workers: int | None = 0,
    max_frames: int | None = None,
    video: bool = False,
    progress: bool = True,
    out: str | os.PathLike[str] | None = None,
    image_column: str = "image",
    id_column: str | None = None,
    merge: bool = True,
    video_as_frames: bool = False,
    attention: str | None = None,
    compile_mode: str = "off",
) -> pd.DataFrame:
    """Score images (or videos, with ``video=True``) with a Q-Align model, pyiqa style.

    ``inputs`` are files, folders (searched recursively), CSV/JSON manifests, or shards of samples
    (WebDataset tar, Parquet, ``datasets`` folders; see :mod:`toolkit.scoring.sources`). Returns one
    row per input with ``path, score, p_excellent .. p_bad, entropy, error`` (+ ``gt_score`` when a
    manifest has it). ``out`` makes the run resumable, ``merge=False`` leaves the parts of several
    processes for a later merge (see :meth:`Scorer.score`).
    ``num_workers=None`` picks the decoding workers for the device (:func:`auto_num_workers`).
    Videos go to the model as videos where it reads them so (the Qwen-VL models, SmolVLM2, InternVL,
    LLaVA-OneVision), else, or with ``video_as_frames``, as frames (see :meth:`Scorer.from_pretrained`).
    ``attention`` and ``compile_mode``: the speed switches (:mod:`toolkit.scoring.compile`); the run's
    ``attrs["speed"]`` says what they did.
    """
    from toolkit.scoring.compile import check_speed_names

    check_task(task)
    check_speed_names(attention, compile_mode)
    # Read the inputs before loading the model, so a bad manifest fails in a second, not a minute.
    plan_inputs(inputs, video, image_column, id_column)
    # Likewise an output made by another model or task, or with videos given the other way.
    refuse_early(out, model, adapter, task, video, video_as_frames)
    scorer = Scorer.from_pretrained(
        model,
        adapter,
        dtype,
        device,
        video_as_frames=video_as_frames,
        attention=attention,
        compile_mode=compile_mode,
        batch_size=batch_size,
        num_workers=num_workers,
        max_frames=max_frames,
        progress=progress,
    )
    df = scorer.score(
        inputs, task=task, video=video, out=out, image_column=image_column, id_column=id_column, merge=merge
    )
    if scorer.speed is not None:
        df.attrs["speed"] = scorer.speed.summary()
    return df
