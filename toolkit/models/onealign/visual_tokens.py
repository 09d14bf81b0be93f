"""Putting visual tokens where the prompt's ``-200`` placeholders are.

One placeholder takes one item of ``images``: a still image, or all frames of a video one after
the other. The visual positions are marked 1 in ``modality_indicators`` (the modality-adaptive
layers use their visual branch there) and get label -100.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import torch
from torch import nn

from toolkit.models.onealign.processing import IMAGE_TOKEN_INDEX
from toolkit.qalign import IGNORE_INDEX

TEXT, VISUAL = 0, 1  # values of ``modality_indicators``


class MergedInputs(TypedDict):
    """The expanded sequences of :func:`merge_visual_tokens`."""

    inputs_embeds: torch.Tensor
    modality_indicators: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None


def embedding_device(embed_tokens: nn.Module) -> torch.device:
    """Device of the ``weight`` of an input-embedding module (``nn.Embedding`` or a wrapper of one)."""
    weight = embed_tokens.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"the input embeddings' weight is a {type(weight).__name__}, not a tensor")
    return weight.device


def split_images(images: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """Normalise the accepted image layouts to (all frames stacked, frames per placeholder).

    ``(B, 3, H, W)``: one image per placeholder. ``(B, F, 3, H, W)`` or a list of ``(F_i, 3, H, W)``
    tensors: the ``F_i`` frames of item ``i`` all go to its one placeholder (video). A list of
    ``(3, H, W)`` tensors counts as single images.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return images, [1] * images.shape[0]
        if images.ndim == 5:
            return images.flatten(0, 1), [images.shape[1]] * images.shape[0]
        raise ValueError(f"images must be (B, 3, H, W) or (B, F, 3, H, W), got shape {tuple(images.shape)}")
    items = [x.unsqueeze(0) if x.ndim == 3 else x for x in images]
    for i, x in enumerate(items):
        if x.ndim != 4 or x.shape[0] == 0:
            raise ValueError(f"image item {i} must be (frames, 3, H, W) with at least one frame, got {tuple(x.shape)}")
    return torch.cat(items, dim=0), [x.shape[0] for x in items]


def merge_visual_tokens(
    embed_tokens: nn.Module,
    input_ids: torch.Tensor,
    visual_features: Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: str = "right",
) -> MergedInputs:
    """Replace each ``-200`` placeholder by the next entry of ``visual_features`` (tokens, hidden).

    Returns ``inputs_embeds``, ``modality_indicators`` (1 on visual tokens), ``attention_mask`` and
    ``labels`` (-100 on visual tokens) of the expanded sequences, on the device of
    ``embed_tokens``. Rows that end up with different lengths are padded with zero embeddings,
    mask 0 and label -100: on the right as the reference training code does, or on the left so
    that the last position of every row is its last token.

    The layout (where every token lands) is worked out on the host from the ids, which are
    small; the device then only does one scatter per output, whatever the batch size, instead
    of slicing and concatenating row by row.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    device = embedding_device(embed_tokens)
    ids_host = input_ids.detach().cpu()  # free for prompts built on the host, one copy otherwise
    placeholders = ids_host == IMAGE_TOKEN_INDEX
    n_placeholders = int(placeholders.sum())
    if n_placeholders != len(visual_features):
        raise ValueError(
            f"the prompts hold {n_placeholders} image placeholder(s) ({IMAGE_TOKEN_INDEX}) but "
            f"{len(visual_features)} image/video item(s) were given"
        )
    batch, length = ids_host.shape
    sizes = torch.tensor([f.shape[0] for f in visual_features], dtype=torch.long)
    # Each source position expands to 1 (text) or to its item's token count (placeholder).
    repeats = torch.ones_like(ids_host)
    repeats[placeholders] = sizes
    row_lengths = repeats.sum(dim=1)
    longest = int(row_lengths.max()) if batch else 0
    shift = (longest - row_lengths) if padding_side == "left" else torch.zeros_like(row_lengths)
    start = repeats.cumsum(dim=1) - repeats + shift[:, None]  # output column of each source position
    dest = torch.arange(batch)[:, None] * longest + start  # ... as a flat (batch * longest) index
    text = ~placeholders
    text_src = torch.nonzero(text.reshape(-1)).flatten()
    text_dest = dest[text]
    # Visual token j of placeholder k lands at start_k + j.
    offsets = torch.arange(int(sizes.sum())) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
    visual_dest = torch.repeat_interleave(dest[placeholders], sizes) + offsets

    def to_device(x: torch.Tensor) -> torch.Tensor:
        return x.to(device, non_blocking=True)

    text_src, text_dest, visual_dest = to_device(text_src), to_device(text_dest), to_device(visual_dest)
    ids = input_ids.to(device, non_blocking=True)
    text_embeds = embed_tokens(ids.masked_fill(ids == IMAGE_TOKEN_INDEX, 0))
    hidden = text_embeds.shape[-1]
    embeds = text_embeds.new_zeros(batch * longest, hidden)
    embeds[text_dest] = text_embeds.reshape(-1, hidden)[text_src]
    if len(visual_features):
        feats = torch.cat([f.to(device=device, dtype=text_embeds.dtype) for f in visual_features])
        embeds[visual_dest] = feats

    modality = torch.full((batch * longest,), TEXT, dtype=torch.long, device=device)
    modality[visual_dest] = VISUAL
    source_mask = (
        torch.ones(batch * length, dtype=torch.bool, device=device)
        if attention_mask is None
        else attention_mask[:, :length].to(device, non_blocking=True).reshape(-1).bool()
    )
    out_mask = torch.zeros(batch * longest, dtype=torch.bool, device=device)
    out_mask[text_dest] = source_mask[text_src]
    out_mask[visual_dest] = True
    out_labels = None
    if labels is not None:
        out_labels = torch.full((batch * longest,), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
        out_labels[text_dest.to(labels.device)] = labels.reshape(-1)[text_src.to(labels.device)]
        out_labels = out_labels.view(batch, longest)
    out_mask = out_mask.view(batch, longest)
    return {
        "inputs_embeds": embeds.view(batch, longest, hidden),
        "modality_indicators": modality.view(batch, longest),
        "attention_mask": out_mask.to(attention_mask.dtype) if attention_mask is not None else out_mask.long(),
        "labels": out_labels,
    }


def expand_labels(labels: torch.Tensor, input_ids: torch.Tensor, tokens_per_item: Sequence[int]) -> torch.Tensor:
    """``labels`` aligned with ``input_ids``, re-aligned with the merged (right-padded) sequence:
    each placeholder becomes ``tokens_per_item[k]`` positions of -100."""
    sizes = iter(tokens_per_item)
    rows = []
    for b in range(input_ids.shape[0]):
        parts, start = [], 0
        for pos in torch.nonzero(input_ids[b] == IMAGE_TOKEN_INDEX).flatten().tolist():
            parts += [labels[b, start:pos], labels.new_full((next(sizes),), IGNORE_INDEX)]
            start = pos + 1
        rows.append(torch.cat(parts + [labels[b, start:]]))
    out = labels.new_full((len(rows), max(len(r) for r in rows)), IGNORE_INDEX)
    for b, row in enumerate(rows):
        out[b, : len(row)] = row
    return out


def widen_placeholder_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, images: Any, tokens_per_frame: int
) -> torch.Tensor:
    """The attention mask of generation steps at the length of the KV cache.

    Generation keeps the unexpanded ids; each placeholder stands for (frames x tokens) positions
    of the cache. Rows must expand to the same length (equal frame counts), as when prefilled.
    """
    _, counts = split_images(images)
    per_item = torch.tensor(counts, device=input_ids.device) * tokens_per_frame
    placeholders = input_ids == IMAGE_TOKEN_INDEX
    if int(placeholders.sum()) != len(counts):
        raise ValueError("generation needs one image/video item per placeholder")
    repeats = torch.ones_like(input_ids)
    repeats[placeholders] = per_item
    lengths = repeats.sum(dim=1)
    if bool((lengths != lengths[0]).any()):
        raise ValueError("generation with images needs every row to expand to the same length (equal frame counts)")
    widened = [
        torch.repeat_interleave(attention_mask[b, : input_ids.shape[1]], repeats[b]) for b in range(len(input_ids))
    ]
    extra = attention_mask[:, input_ids.shape[1] :]
    return torch.cat([torch.stack(widened), extra], dim=1)
