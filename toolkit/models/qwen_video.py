"""Qwen2-VL, Qwen2.5-VL, Qwen3-VL and Qwen3.5 reading a video as a video, without torchvision.

By default a video is scored (and trained) as its frames, one image each, which every family
reads. The Qwen-VL models were also trained on videos proper: consecutive frames paired
into temporal patches of two, one visual sequence with 3-D positions whose time axis advances
per pair. transformers builds those inputs with its video processor, which needs torchvision;
this backbone builds the same layout from the image processor instead: every frame is resized
and normalised exactly as an image, and the two copies of one frame that an image patch holds
are replaced by two consecutive frames. A video of two equal frames is therefore the same input
as that frame as an image, which the tests check through the model (Qwen2-VL, Qwen2.5-VL; Qwen3-VL
and Qwen3.5 also write each frame pair's time, "<0.5 seconds>", before its tokens, as
transformers' Qwen3-VL processor does).

The model is told when the frames were taken (:class:`toolkit.media.FrameTimes`, carried by
the frames the scorer and the trainer read; frames without times are one second apart, the
toolkit's sampling rate): Qwen3-VL and Qwen3.5 read each pair's mean time; Qwen2.5-VL takes
one temporal position step per video, the mean interval between its pairs (the real spacing
of a clip capped to a few frames is several seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError
from toolkit.media import SAMPLED_FPS, FrameTimes
from toolkit.models.hf import HFVisionLanguageBackbone
from toolkit.qalign import InputKind

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


class QwenVLBackbone(HFVisionLanguageBackbone):
    """Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5; with ``native_video`` on, videos go to the model as videos."""

    supports_native_video = True

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        super().__init__(model, processor)
        # Kept apart from the model: scoring workers build batches with a copy that has none.
        self._model_type = getattr(getattr(model, "config", None), "model_type", None)

    def _model_inputs(
        self,
        texts: list[str],
        visuals: list[list[Any]],
        kinds: Sequence[InputKind],
        padding_side: str,
        times: Sequence[FrameTimes],
    ) -> dict[str, Any]:
        if not (self.native_video and "video" in kinds):
            return super()._model_inputs(texts, visuals, kinds, padding_side, times)
        import numpy as np
        import torch

        processor, merge = self.processor, self.processor.image_processor.merge_size**2
        t = processor.image_processor.temporal_patch_size
        images, image_grids, videos, video_grids, steps = [], [], [], [], []
        expanded = []
        for text, frames, kind, when in zip(texts, visuals, kinds, times, strict=True):
            if kind == "video":
                patches, grid = self._video_patches(frames)
                videos.append(patches)
                video_grids.append(grid)
                seconds = _paired(list(when.seconds), t)
                steps.append(_pair_step(seconds, t))
                if self._timestamped:
                    text = self._with_timestamps(text, seconds, grid, merge)
                else:
                    text = _expand(text, processor.video_token, [int(np.prod(grid)) // merge])
            else:
                out = processor.image_processor(images=list(frames), return_tensors="np")
                images.append(out["pixel_values"])
                image_grids.extend(out["image_grid_thw"])
                text = _expand(text, processor.image_token, [int(np.prod(g)) // merge for g in out["image_grid_thw"]])
            expanded.append(text)
        encoded = processor.tokenizer(
            expanded, padding=True, padding_side=padding_side, add_special_tokens=False, return_tensors="pt"
        )
        batch: dict[str, Any] = dict(encoded)
        batch["mm_token_type_ids"] = torch.tensor(processor.create_mm_token_type_ids(encoded["input_ids"].tolist()))
        if images:
            batch["pixel_values"] = torch.from_numpy(np.concatenate(images))
            batch["image_grid_thw"] = torch.tensor(np.array(image_grids), dtype=torch.long)
        batch["pixel_values_videos"] = torch.from_numpy(np.concatenate(videos))
        batch["video_grid_thw"] = torch.tensor(video_grids, dtype=torch.long)
        if self._model_type == "qwen2_5_vl":
            batch["second_per_grid_ts"] = torch.tensor(steps, dtype=torch.float32)
        return batch

    @property
    def _timestamped(self) -> bool:
        # Qwen3-VL and Qwen3.5 write each frame pair's time before its tokens.
        return self._model_type in ("qwen3_vl", "qwen3_5")

    def _with_timestamps(self, text: str, seconds: list[float], grid: list[int], merge: int) -> str:
        """The video placeholder of ``text`` replaced as transformers' Qwen3-VL processor does it: per
        frame pair "<t seconds>", then its tokens between vision start and end, t the mean time of the
        pair (``seconds``: the frames' times, the last pair completed as :func:`_paired` does)."""
        p = self.processor
        t = p.image_processor.temporal_patch_size
        times = [(seconds[i] + seconds[i + t - 1]) / 2 for i in range(0, len(seconds), t)]
        per_pair = grid[1] * grid[2] // merge
        tokens = "".join(
            f"<{s:.1f} seconds>" + p.vision_start_token + p.video_token * per_pair + p.vision_end_token for s in times
        )
        head, sep, tail = text.partition(p.video_token)
        if not sep or p.video_token in tail:
            raise InputError(f"the prompt needs exactly one {p.video_token} placeholder per video")
        return head + tokens + tail

    def _video_patches(self, frames: Sequence[Image.Image]) -> tuple[np.ndarray, list[int]]:
        """Flat patches (T * H * W, C * t * p * p) and the (T, H, W) grid of one video."""
        from PIL import Image

        ip = self.processor.image_processor
        t, p = ip.temporal_patch_size, ip.patch_size
        frames = list(frames)
        if not frames:
            raise InputError("a video has no frames")
        # A last incomplete pair repeats the last frame, as transformers' video processor does;
        # all frames take the first one's size, so they share one grid.
        frames += [frames[-1]] * (-len(frames) % t)
        size = frames[0].size
        frames = [f if f.size == size else f.resize(size, Image.Resampling.BICUBIC) for f in frames]
        out = ip(images=frames, return_tensors="np")
        _, grid_h, grid_w = (int(v) for v in out["image_grid_thw"][0])
        n, cells = len(frames), grid_h * grid_w
        # Image patches hold t copies of their frame: keep one, then stack t consecutive frames
        # in its place (patch order and feature order (C, t, p, p) are the image processor's).
        single = out["pixel_values"].reshape(n, cells, -1, t, p, p)[:, :, :, 0]
        pairs = single.reshape(n // t, t, cells, -1, p, p).transpose(0, 2, 3, 1, 4, 5)
        return pairs.reshape((n // t) * cells, -1), [n // t, grid_h, grid_w]


def _paired(seconds: list[float], t: int) -> list[float]:
    """Frame times with a short last pair completed by repeating its frame, as its pixels are."""
    return seconds + seconds[-1:] * (-len(seconds) % t)


def _pair_step(seconds: list[float], t: int) -> float:
    """Qwen2.5-VL's seconds per temporal position of one video (times of whole pairs, :func:`_paired`).

    The model takes one value per video and places pair ``k`` at ``k`` times it, so this is the mean
    interval between the starts of consecutive pairs (the last start minus the first, over the pairs
    between). A video of one pair is at position 0 whatever the value: it is ``t`` frames at the
    toolkit's sampling rate there, as for frames given without times.
    """
    pairs = len(seconds) // t
    if pairs < 2:
        return t / SAMPLED_FPS
    return (seconds[(pairs - 1) * t] - seconds[0]) / (pairs - 1)


def _expand(text: str, token: str, counts: Sequence[int]) -> str:
    """``text`` with its i-th ``token`` repeated ``counts[i]`` times (one placeholder per visual)."""
    parts = text.split(token)
    if len(parts) != len(counts) + 1:
        raise InputError(f"the prompt has {len(parts) - 1} {token} placeholders for {len(counts)} visuals")
    return parts[0] + "".join(token * n + part for n, part in zip(counts, parts[1:]))
