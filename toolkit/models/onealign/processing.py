"""Inputs of OneAlign exactly as the reference builds them: pixels, prompt ids, level-word ids.

Pixels: each frame is padded to a square in the CLIP mean colour (``expand2square``), then the
CLIP image processor of transformers 4.x is reproduced from ``preprocessor_config.json``
(CLIPFeatureExtractor style, ``size`` a plain int): shortest edge to ``size`` with PIL bicubic,
centre crop, ``x * (1/255)`` computed in float64 and stored as float32, then ``(x - mean) / std``
in float32.

Text: the LLaMA tokenizer of the checkpoint (``tokenizer.model``), with the prompt split at
``<|image|>``: every part is tokenized with its BOS, only the first part's BOS is kept, and the
placeholder id -200 goes in between (``tokenizer_image_token`` of the reference).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toolkit.errors import InputError, ToolkitError
from toolkit.media import CLIP_MEAN, expand2square, pad_color
from toolkit.qalign import IMAGE_TAG, LEVELS, InputKind, Task, answer_stem, scoring_question

if TYPE_CHECKING:
    import torch
    from PIL import Image

IMAGE_TOKEN_INDEX = -200
"""Id that stands in the prompt ids for the image (or all frames of a video)."""
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def scoring_prompt(task: Task, kind: InputKind) -> str:
    """The Q-Align scoring prompt of the current HF remote code and ``scorer.py``:
    ``"USER: <question>\\n<|image|>\\nASSISTANT: <answer stem>"``."""
    return f"USER: {scoring_question(task, kind)}\n{IMAGE_TAG}\nASSISTANT: {answer_stem(task, kind)}"


def tokenize_with_images(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with -200 for each ``<|image|>`` (the reference ``tokenizer_image_token``).

    Each part is tokenized on its own with BOS; if the first part starts with BOS it is kept
    once and every part's first token (its BOS) is dropped. A prompt that starts with the
    placeholder therefore keeps the BOS of the following part, as the reference does.
    """
    chunks = [tokenizer(part).input_ids if part else [] for part in prompt.split(IMAGE_TAG)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[offset:])
    return ids


def level_token_ids(tokenizer: Any) -> list[int]:
    """``tokenizer(word).input_ids[1]`` for each level word (LEVELS order), checked to be one token."""
    ids = []
    for word in LEVELS:
        pieces = tokenizer(word).input_ids
        if len(pieces) != 2 or pieces[0] != tokenizer.bos_token_id:
            raise ToolkitError(
                f"the tokenizer turns the level word {word!r} into {tokenizer.convert_ids_to_tokens(pieces)};"
                " OneAlign scoring needs BOS plus exactly one token per level word"
            )
        ids.append(int(pieces[1]))
    return ids


# --------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageSettings:
    """What ``preprocessor_config.json`` says, in the CLIP image processor's terms."""

    shortest_edge: int = 448
    crop_height: int = 448
    crop_width: int = 448
    resample: int = 3  # PIL bicubic
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "preprocessor_config.json") -> ImageSettings:
        def edge(value: Any, key: str) -> tuple[int, int]:
            # transformers 4.x: an int is the shortest edge for ``size`` and a square for ``crop_size``.
            if isinstance(value, int):
                return value, value
            if isinstance(value, dict):
                if "shortest_edge" in value:
                    return int(value["shortest_edge"]), int(value["shortest_edge"])
                if "height" in value and "width" in value:
                    return int(value["height"]), int(value["width"])
            raise InputError(f"{source}: cannot read {key}={value!r} (expected an int or a size dict)")

        size = data.get("size", cls.shortest_edge)
        if isinstance(size, dict) and "height" in size and size.get("height") != size.get("width"):
            raise InputError(f"{source}: non-square resize {size} is not the CLIP preprocessing OneAlign uses")
        crop_h, crop_w = edge(data.get("crop_size", size), "crop_size")
        mean = tuple(float(x) for x in data.get("image_mean", CLIP_MEAN))
        std = tuple(float(x) for x in data.get("image_std", CLIP_STD))
        if len(mean) != 3 or len(std) != 3:
            raise InputError(f"{source}: image_mean and image_std need three values, got {mean} and {std}")
        return cls(
            shortest_edge=edge(size, "size")[0],
            crop_height=crop_h,
            crop_width=crop_w,
            resample=int(data.get("resample", 3)),
            do_resize=bool(data.get("do_resize", True)),
            do_center_crop=bool(data.get("do_center_crop", True)),
            do_rescale=bool(data.get("do_rescale", True)),
            rescale_factor=float(data.get("rescale_factor", 1 / 255)),
            do_normalize=bool(data.get("do_normalize", True)),
            image_mean=mean,
            image_std=std,
        )

    @property
    def pad_color(self) -> tuple[int, ...]:
        return pad_color(self.image_mean)


def _resize_shortest_edge(img: Image.Image, edge: int, resample: int) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(edge * long / short)
    size = (edge, new_long) if w <= h else (new_long, edge)
    return img.resize(size, resample=resample)


def _center_crop(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = arr.shape[:2]
    if h < height or w < width:  # transformers pads with zeros first
        canvas = np.zeros((max(h, height), max(w, width), arr.shape[2]), dtype=arr.dtype)
        top, left = (canvas.shape[0] - h) // 2, (canvas.shape[1] - w) // 2
        canvas[top : top + h, left : left + w] = arr
        arr, h, w = canvas, canvas.shape[0], canvas.shape[1]
    top, left = (h - height) // 2, (w - width) // 2
    return arr[top : top + height, left : left + width]


def preprocess_frames(
    frames: Sequence[Image.Image], settings: ImageSettings, pad_to_square: bool = True, normalize: bool = True
) -> torch.Tensor:
    """(N, 3, H, W) float32 pixels of ``frames`` (RGB PIL images), one row per frame.

    ``normalize=False`` stops before rescaling and normalising and returns the uint8 pixels:
    a quarter of the bytes to move between processes and to the device, where
    :func:`normalize_pixels` finishes the job with exactly the same floats.
    """
    import torch

    if not frames:
        raise InputError("no frames to preprocess")
    arrays = []
    for frame in frames:
        img = frame.convert("RGB") if frame.mode != "RGB" else frame
        if pad_to_square:
            img = expand2square(img, settings.pad_color)
        if settings.do_resize:
            img = _resize_shortest_edge(img, settings.shortest_edge, settings.resample)
        arr = np.asarray(img, dtype=np.uint8)
        if settings.do_center_crop:
            arr = _center_crop(arr, settings.crop_height, settings.crop_width)
        arrays.append(arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"frames preprocess to different sizes {sorted(shapes)}; enable centre cropping")
    batch = np.stack(arrays)
    if not normalize:
        return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
    table = _pixel_table(settings)
    out = np.empty((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), dtype=np.float32)
    for c in range(batch.shape[3]):
        out[:, c] = table[c][batch[..., c]]
    return torch.from_numpy(out)


def normalize_pixels(pixels: torch.Tensor, settings: ImageSettings) -> torch.Tensor:
    """uint8 (..., 3, H, W) pixels -> the float32 model inputs, on the pixels' device.

    The same lookup table as :func:`preprocess_frames`, so the result is bit-identical to
    preprocessing with ``normalize=True``; on a GPU it costs next to nothing.
    """
    import torch

    if pixels.dtype != torch.uint8:
        raise InputError(f"normalize_pixels takes uint8 pixels, got {pixels.dtype}")
    if pixels.ndim < 3 or pixels.shape[-3] != 3:
        raise InputError(f"pixels must be (..., 3, H, W), got shape {tuple(pixels.shape)}")
    table = _device_table(settings, pixels.device)
    index = pixels.long()
    out = torch.empty(pixels.shape, dtype=torch.float32, device=pixels.device)
    # One flat lookup per channel: ``torch.take`` is a plain gather, several times faster on a CPU
    # than advanced indexing into one (3 * 256) table with per-channel offsets.
    for c in range(3):
        out[..., c, :, :] = torch.take(table[c], index[..., c, :, :])
    return out


@lru_cache(maxsize=16)
def _device_table(settings: ImageSettings, device: torch.device) -> torch.Tensor:
    """The (3, 256) lookup table on ``device``, made once per device, not per image."""
    import torch

    return torch.from_numpy(_pixel_table(settings)).to(device)


@lru_cache(maxsize=8)
def _pixel_table(settings: ImageSettings) -> np.ndarray:
    """(3, 256) float32: the rescaled and normalised value of every uint8 level per channel.

    Rescaling and normalising act on each value alone, so applying the exact arithmetic of
    transformers 4.x (``x * (1/255)`` in float64 stored as float32, then ``(x - mean) / std`` in
    float32) to the 256 possible levels once and looking the pixels up gives the same floats
    as computing it pixel by pixel, several times faster.
    """
    levels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    if settings.do_rescale:
        values = (levels * settings.rescale_factor).astype(np.float32)  # float64 product, as transformers 4.x
    else:
        values = levels.astype(np.float32)
    if settings.do_normalize:
        mean = np.asarray(settings.image_mean, dtype=np.float32)
        std = np.asarray(settings.image_std, dtype=np.float32)
        values = (values - mean) / std
    return np.ascontiguousarray(values.T)


# --------------------------------------------------------------------------- processor


def _resolve_file(path_or_repo: str | os.PathLike[str], name: str, **hub_kwargs: Any) -> Path:
    local = Path(path_or_repo)
    if local.is_dir():
        target = local / name
        if not target.is_file():
            raise InputError(f"{local} has no {name}")
        return target
    from transformers.utils import cached_file

    try:
        resolved = cached_file(str(path_or_repo), name, **hub_kwargs)
    except OSError as exc:
        raise InputError(f"cannot get {name} of {path_or_repo}: {exc}") from None
    if resolved is None:
        raise InputError(f"{path_or_repo} has no {name}")
    return Path(resolved)


class OneAlignProcessor:
    """Tokenizer and image preprocessing of a OneAlign checkpoint."""

    def __init__(self, tokenizer: Any, image_settings: ImageSettings) -> None:
        self.tokenizer = tokenizer
        self.image_settings = image_settings

    @classmethod
    def from_pretrained(cls, path_or_repo: str | os.PathLike[str], **hub_kwargs: Any) -> OneAlignProcessor:
        """Read ``preprocessor_config.json`` and the LLaMA tokenizer (``tokenizer.model``) of a
        checkpoint folder or hub repository."""
        from transformers import LlamaTokenizer

        cfg_path = _resolve_file(path_or_repo, "preprocessor_config.json", **hub_kwargs)
        try:
            settings = ImageSettings.from_dict(json.loads(cfg_path.read_text()), str(cfg_path))
        except json.JSONDecodeError as exc:
            raise InputError(f"{cfg_path} is not valid JSON: {exc}") from None
        try:
            # The LLaMA class directly (not AutoTokenizer), so the checkpoint's remote-code
            # config is never consulted; transformers converts tokenizer.model when no
            # tokenizer.json exists, which gives the slow tokenizer's ids for these prompts.
            tokenizer = LlamaTokenizer.from_pretrained(str(path_or_repo), **hub_kwargs)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load the tokenizer of {path_or_repo}: {exc}") from None
        return cls(tokenizer, settings)

    def preprocess(self, frames: Sequence[Image.Image], normalize: bool = True) -> torch.Tensor:
        """(N, 3, H, W) float32 pixels: square padding in the mean colour, then CLIP preprocessing.

        ``normalize=False``: the uint8 pixels before rescaling and normalising (see :meth:`normalize`).
        """
        return preprocess_frames(frames, self.image_settings, normalize=normalize)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """The float32 model inputs of uint8 pixels from ``preprocess(..., normalize=False)``."""
        return normalize_pixels(pixels, self.image_settings)

    def tokenize(self, prompt: str) -> list[int]:
        return tokenize_with_images(self.tokenizer, prompt)

    def scoring_ids(self, task: Task, kind: InputKind) -> list[int]:
        return self.tokenize(scoring_prompt(task, kind))

    def level_token_ids(self) -> list[int]:
        return level_token_ids(self.tokenizer)


__all__ = [
    "IMAGE_TOKEN_INDEX",
    "ImageSettings",
    "OneAlignProcessor",
    "level_token_ids",
    "normalize_pixels",
    "preprocess_frames",
    "scoring_prompt",
    "tokenize_with_images",
]
