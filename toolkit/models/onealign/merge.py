"""Putting visual tokens where the prompt's ``-200`` placeholders are.

One placeholder takes one item of ``images``: a still image, or all frames of a video one after
the other. The visual positions are marked 1 in ``modality_indicators`` (the modality-adaptive
layers use their visual branch there) and get label -100.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from toolkit.models.onealign.processing import IGNORE_INDEX, IMAGE_TOKEN_INDEX

TEXT, VISUAL = 0, 1  # values of ``modality_indicators``


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
) -> dict[str, torch.Tensor | None]:
    """Replace each ``-200`` placeholder by the next entry of ``visual_features`` (tokens, hidden).

    Returns ``inputs_embeds``, ``modality_indicators`` (1 on visual tokens), ``attention_mask`` and
    ``labels`` (-100 on visual tokens) of the expanded sequences. Rows that end up with different
    lengths are padded with zero embeddings, mask 0 and label -100: on the right as the reference
    training code does, or on the left so that the last position of every row is its last token.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    placeholders = input_ids == IMAGE_TOKEN_INDEX
    n_placeholders = int(placeholders.sum())
    if n_placeholders != len(visual_features):
        raise ValueError(
            f"the prompts hold {n_placeholders} image placeholder(s) ({IMAGE_TOKEN_INDEX}) but "
            f"{len(visual_features)} image/video item(s) were given"
        )
    text_embeds = embed_tokens(input_ids.masked_fill(placeholders, 0))
    mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()

    rows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    feature_iter = iter(visual_features)
    for b in range(input_ids.shape[0]):
        embeds, modality, row_mask, row_labels = [], [], [], []
        start = 0
        for pos in torch.nonzero(placeholders[b]).flatten().tolist() + [input_ids.shape[1]]:
            embeds.append(text_embeds[b, start:pos])
            modality.append(torch.full((pos - start,), TEXT, dtype=torch.long, device=input_ids.device))
            row_mask.append(mask[b, start:pos])
            if labels is not None:
                row_labels.append(labels[b, start:pos])
            if pos == input_ids.shape[1]:
                break
            feats = next(feature_iter).to(device=text_embeds.device, dtype=text_embeds.dtype)
            n = feats.shape[0]
            embeds.append(feats)
            modality.append(torch.full((n,), VISUAL, dtype=torch.long, device=input_ids.device))
            row_mask.append(torch.ones(n, dtype=torch.bool, device=input_ids.device))
            if labels is not None:
                row_labels.append(torch.full((n,), IGNORE_INDEX, dtype=labels.dtype, device=labels.device))
            start = pos + 1
        rows.append(
            (
                torch.cat(embeds),
                torch.cat(modality),
                torch.cat(row_mask),
                torch.cat(row_labels) if labels is not None else None,
            )
        )

    longest = max(r[0].shape[0] for r in rows)

    def pad(x: torch.Tensor, value: float | int) -> torch.Tensor:
        fill = x.new_full((longest - x.shape[0], *x.shape[1:]), value)
        return torch.cat([fill, x] if padding_side == "left" else [x, fill])

    out_mask = torch.stack([pad(r[2], False) for r in rows])
    return {
        "inputs_embeds": torch.stack([pad(r[0], 0.0) for r in rows]),
        "modality_indicators": torch.stack([pad(r[1], TEXT) for r in rows]),
        "attention_mask": out_mask.to(attention_mask.dtype) if attention_mask is not None else out_mask.long(),
        "labels": torch.stack([pad(r[3], IGNORE_INDEX) for r in rows]) if labels is not None else None,
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
    widened = [torch.repeat_interleave(attention_mask[b, : input_ids.shape[1]], repeats[b]) for b in range(len(input_ids))]
    extra = attention_mask[:, input_ids.shape[1] :]
    return torch.cat([torch.stack(widened), extra], dim=1)
