"""SmolVLM2, InternVL and LLaVA-OneVision reading a video as a video, without torchvision.

By default a video is scored (and trained) as its frames, one image each. These three families
were also trained on videos proper, each with its own layout, which transformers builds with
the family's video processor (that needs torchvision). The backbones here build the same inputs
from the frames with PIL and numpy, in the video processor's order (resize, rescale, normalise):

* SmolVLM2: every frame one unsplit image at the model's image size, after the intro "You are
  provided the following series of N frames from a H:MM:SS [H:MM:SS] video." and a "Frame from
  MM:SS:" before each frame's image tokens; the conversation is rendered with the processor's
  video chat template, as transformers' ``apply_chat_template`` does for a video.
* InternVL: every frame one tile at the video size (no cropping into patches), written
  "Frame1: <img>...</img>" one line per frame.
* LLaVA-OneVision: ``pixel_values_videos``, whose features the model pools 2 x 2 per frame and
  closes with its learned newline; the prompt holds that many ``<video>`` tokens.

SmolVLM2 is told when the frames were taken and how long the video is
(:class:`toolkit.media.FrameTimes`, carried by the frames the scorer and the trainer read; frames
without times are one second apart, the toolkit's sampling rate, which SmolVLM2 samples at too).
The video processor's settings (size, mean, standard deviation, resampling) come from the
checkpoint's video processor configuration where it has one, else from its image processor, as
transformers falls back to them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.errors import InputError, ToolkitError
from toolkit.media import FrameTimes
from toolkit.models.hf import HFVisionLanguageBackbone
from toolkit.qalign import InputKind

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


@dataclass
class _Row:
    """One conversation's token ids (visual placeholders expanded) and its pixel tensors."""

    input_ids: list[int]
    pixels: dict[str, torch.Tensor] = field(default_factory=dict)


class FamilyVideoBackbone(HFVisionLanguageBackbone):
    """A family whose video layout is one placeholder in the rendered prompt, expanded with the
    video's inputs (subclasses say how: :meth:`_video_inputs`)."""

    supports_native_video = True

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        super().__init__(model, processor)
        # Read now: scoring workers build batches with a copy of the backbone that has no model.
        folder = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
        self._video_settings = _read_video_settings(Path(str(folder))) if folder else {}

    @property
    def video_placeholder(self) -> str:
        """What the chat template writes for a video."""
        return str(getattr(self.processor, "video_token", "<video>"))

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
        rows = [
            self._video_row(text, frames, when) if kind == "video" else self._image_row(text, frames)
            for text, frames, kind, when in zip(texts, visuals, kinds, times, strict=True)
        ]
        return _collate(rows, self.tokenizer.pad_token_id, padding_side)

    def _image_row(self, text: str, frames: list[Any]) -> _Row:
        # Still images (a training batch mixes them with videos) as the processor makes them.
        out = dict(self.processor(text=[text], images=[frames], add_special_tokens=False, return_tensors="pt"))
        ids = out.pop("input_ids")[0].tolist()
        out.pop("attention_mask", None)
        return _Row(ids, out)

    def _video_row(self, text: str, frames: list[Any], times: FrameTimes) -> _Row:
        if not frames:
            raise InputError("a video has no frames")
        head, sep, tail = text.partition(self.video_placeholder)
        if not sep or self.video_placeholder in tail:
            raise InputError(f"the prompt needs exactly one {self.video_placeholder} placeholder per video")
        expansion, pixels = self._video_inputs(frames, times)
        ids = self.tokenizer(head + expansion + tail, add_special_tokens=False)["input_ids"]
        return _Row(list(ids), pixels)

    def _video_inputs(self, frames: list[Image.Image], times: FrameTimes) -> tuple[str, dict[str, torch.Tensor]]:
        """The text that replaces the video placeholder and the video's pixel tensors (``times``:
        when the frames were taken, for a family whose layout says so)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the video processor's settings

    def video_settings(self) -> dict[str, Any]:
        """The checkpoint's video processor configuration (``processor_config.json``'s
        ``video_processor``, else ``video_preprocessor_config.json``); empty when it has none."""
        return self._video_settings

    def _setting(self, name: str) -> Any:
        """A video processor setting, falling back to the image processor's."""
        value = self.video_settings().get(name)
        return value if value is not None else getattr(self.processor.image_processor, name, None)

    def _frames_at_video_size(self, frames: list[Image.Image]) -> np.ndarray:
        """(F, C, H, W) float32: each frame resized to the video size, rescaled and normalised."""
        size = self._setting("size") or {}
        if not ("height" in size and "width" in size):
            raise ToolkitError(f"the video processor size {size!r} has no height and width")
        return resized_frames(
            frames,
            (int(size["height"]), int(size["width"])),
            self._setting("resample"),
            self._setting("image_mean"),
            self._setting("image_std"),
            float(self._setting("rescale_factor") or 1 / 255),
        )


def _read_video_settings(folder: Path) -> dict[str, Any]:
    for name, key in (("processor_config.json", "video_processor"), ("video_preprocessor_config.json", None)):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        found = data.get(key) if key is not None and isinstance(data, dict) else data
        if isinstance(found, dict):
            return found
    return {}


def resized_frames(
    frames: Sequence[Image.Image],
    size: tuple[int, int],
    resample: int | None,
    mean: Sequence[float] | float,
    std: Sequence[float] | float,
    rescale_factor: float = 1 / 255,
) -> np.ndarray:
    """Frames resized to ``size`` (height, width), rescaled and normalised: (F, C, H, W) float32."""
    import numpy as np
    from PIL import Image

    height, width = size
    method = Image.Resampling(int(resample)) if resample is not None else Image.Resampling.BICUBIC
    pixels = np.stack([np.asarray(f.convert("RGB").resize((width, height), method), dtype=np.float32) for f in frames])
    pixels = pixels * np.float32(rescale_factor)
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)


def _collate(rows: list[_Row], pad_id: int, padding_side: str) -> dict[str, Any]:
    """Rows padded into one batch; pixel tensors are concatenated in row order, with their second
    axis (images of a row, patches, frames) zero-padded to the longest, as the processors pad it."""
    import torch

    width = max(len(r.input_ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row.input_ids)
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        ids[i, cols] = torch.tensor(row.input_ids, dtype=torch.long)
        mask[i, cols] = 1
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
    for key in dict.fromkeys(k for r in rows for k in r.pixels):
        parts = [torch.as_tensor(r.pixels[key]) for r in rows if key in r.pixels]
        if parts[0].ndim >= 2:
            if len({p.shape[2:] for p in parts}) > 1:
                raise ToolkitError(f"{key} of different shapes cannot share a batch: {[tuple(p.shape) for p in parts]}")
            longest = max(p.shape[1] for p in parts)
            parts = [torch.cat([p, p.new_zeros((p.shape[0], longest - p.shape[1], *p.shape[2:]))], 1) for p in parts]
        batch[key] = torch.cat(parts)
    return batch


# ------------------------------------------------------------------ SmolVLM2

_SMOLVLM_INTRO = "You are provided the following series of {count} frames from a {duration} [H:MM:SS] video.\n"


class SmolVLMBackbone(FamilyVideoBackbone):
    """SmolVLM2; with ``native_video`` on, videos get the processor's timestamped frame layout."""

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        # transformers renders every conversation that holds a video with the processor's own video
        # template, whatever the checkpoint's: the same here.
        template = None
        if any(part.get("type") == "video" for m in messages for part in m.get("content", [])):
            from transformers.models.smolvlm import processing_smolvlm

            template = getattr(processing_smolvlm, "DEFAULT_CHAT_TEMPLATE", None)
        if template is None:
            return super()._render(messages, add_generation_prompt)
        text: str = self.processor.apply_chat_template(
            messages, chat_template=template, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return text

    def _video_inputs(self, frames: list[Image.Image], times: FrameTimes) -> tuple[str, dict[str, torch.Tensor]]:
        from num2words import num2words

        p, ip = self.processor, self.processor.image_processor
        max_size = self._setting("max_image_size") or {}
        sampling = self.video_settings().get("video_sampling") or getattr(ip, "video_sampling", None) or {}
        size = sampling.get("video_size") or self._setting("size") or max_size
        if "longest_edge" not in max_size or "longest_edge" not in size:
            raise ToolkitError(f"the SmolVLM processor sizes {size!r}, {max_size!r} have no longest_edge")
        # The video processor's resizes: longest edge to the video size, then square at the image size.
        out = ip(
            images=[list(frames)],
            do_image_splitting=False,
            size={"longest_edge": size["longest_edge"]},
            max_image_size={"longest_edge": max_size["longest_edge"]},
            resample=self._setting("resample"),
            image_mean=self._setting("image_mean"),
            image_std=self._setting("image_std"),
            return_tensors="pt",
        )
        pixels = {k: out[k] for k in ("pixel_values", "pixel_attention_mask") if k in out}
        image = p.fake_image_token + p.global_image_token + p.image_token * p.image_seq_len + p.fake_image_token
        # Whole seconds, cut down, of each frame's time and of the video's length, as the processor
        # writes them from the video's metadata.
        text = _SMOLVLM_INTRO.format(count=num2words(len(frames)), duration=timedelta(seconds=int(times.duration)))
        for second in (int(s) for s in times.seconds):
            text += f"\nFrame from {second // 60:02d}:{second % 60:02d}:" + image
        return text + "\n\n", pixels


# ------------------------------------------------------------------ InternVL


class InternVLBackbone(FamilyVideoBackbone):
    """InternVL; with ``native_video`` on, a video is one tile per frame, "Frame<i>: <img>...</img>"."""

    def _video_inputs(self, frames: list[Image.Image], times: FrameTimes) -> tuple[str, dict[str, torch.Tensor]]:
        import torch

        p = self.processor
        tile = p.start_image_token + p.image_token * p.image_seq_length + p.end_image_token
        text = "\n".join(f"Frame{i + 1}: {tile}" for i in range(len(frames)))
        return text, {"pixel_values": torch.from_numpy(self._frames_at_video_size(frames))}


# ------------------------------------------------------------------ LLaVA-OneVision


class LlavaOnevisionBackbone(FamilyVideoBackbone):
    """LLaVA-OneVision; with ``native_video`` on, videos go in ``pixel_values_videos``.

    The model encodes the videos of a batch as one (videos, frames) tensor, so videos of
    different lengths are zero-padded to the longest, and a hook on the model gives each video
    the model's own features of its real frames (counted from its ``<video>`` tokens)."""

    def __init__(self, model: torch.nn.Module, processor: Any) -> None:
        super().__init__(model, processor)
        inner = getattr(model, "model", None)
        if inner is not None and hasattr(inner, "get_video_features"):
            inner.register_forward_pre_hook(_videos_of_different_lengths, with_kwargs=True)

    def _video_inputs(self, frames: list[Image.Image], times: FrameTimes) -> tuple[str, dict[str, torch.Tensor]]:
        import torch

        side = math.ceil(int(math.sqrt(self.processor.num_image_tokens)) / 2)  # 2 x 2 pooling per frame
        text = self.video_placeholder * (len(frames) * side * side + 1)  # + the closing newline
        return text, {"pixel_values_videos": torch.from_numpy(self._frames_at_video_size(frames))[None]}


def _videos_of_different_lengths(
    module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Forward pre-hook of ``LlavaOnevisionModel``: zero-padded videos (one per row) encoded frame
    by frame as the model does, only over each video's real frames; the features then go in as
    ``mm_encoder_outputs`` (with the images', which the model does not take beside them)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    videos, ids = kwargs.get("pixel_values_videos"), kwargs.get("input_ids")
    if videos is None or ids is None or kwargs.get("mm_encoder_outputs") is not None:
        return None
    config: Any = module.config
    side = math.ceil(config.vision_config.image_size // config.vision_config.patch_size / 2)
    counts = (ids == config.video_token_id).sum(dim=1)
    frames = ((counts[counts > 0] - 1) // (side * side)).tolist()
    if len(frames) != videos.shape[0] or all(f == videos.shape[1] for f in frames):
        return None  # one length (or a layout this hook does not know): the model's own path
    options = {k: kwargs.get(k) for k in ("vision_feature_layer", "vision_feature_select_strategy")}
    get_video: Any = module.get_video_features
    features = torch.cat(
        [get_video(videos[i : i + 1, :f], return_dict=True, **options).pooler_output for i, f in enumerate(frames)],
        dim=1,
    )
    outputs = {"video": BaseModelOutputWithPooling(pooler_output=features)}
    if kwargs.get("pixel_values") is not None:
        get_image: Any = module.get_image_features
        outputs["image"] = get_image(
            kwargs["pixel_values"],
            kwargs.get("image_sizes"),
            vision_aspect_ratio=kwargs.get("vision_aspect_ratio"),
            batch_num_images=kwargs.get("batch_num_images"),
            return_dict=True,
            **options,
        )
    return args, {**kwargs, "pixel_values": None, "pixel_values_videos": None, "mm_encoder_outputs": outputs}
