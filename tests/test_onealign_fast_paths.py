"""The vectorised paths of the OneAlign port against straightforward constructions.

Branch routing of the modality-adaptive modules, the placement of visual tokens and the pixel
lookup table must give exactly what the simple per-token / per-row / per-pixel versions give.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from toolkit.models.onealign.modeling import ModalityRouting, MultiwayNetwork
from toolkit.models.onealign.processing import IMAGE_TOKEN_INDEX, ImageSettings, preprocess_frames
from toolkit.models.onealign.visual_tokens import TEXT, VISUAL, merge_visual_tokens
from toolkit.qalign import IGNORE_INDEX


def masked_reference(net: MultiwayNetwork, hidden: torch.Tensor, indicators: torch.Tensor) -> torch.Tensor:
    """Each branch applied to the tokens its indicator selects, by boolean mask."""
    out = torch.zeros(*hidden.shape[:-1], net.multiway[0].out_features)
    for k, branch in enumerate(net.multiway):
        selected = indicators == k
        if selected.any():
            out[selected] = branch(hidden[selected])
    return out


# --------------------------------------------------------------------------- routing


def test_routing_gives_each_token_its_branch_exactly() -> None:
    torch.manual_seed(0)
    net = MultiwayNetwork(partial(nn.Linear, 16, 12))
    hidden = torch.randn(3, 11, 16)
    indicators = (torch.rand(3, 11) < 0.4).long()
    routing = ModalityRouting.from_indicators(indicators)
    assert routing.counts == (int((indicators == 0).sum()), int((indicators == 1).sum()))
    expected = masked_reference(net, hidden, indicators)
    assert torch.equal(net(hidden, routing), expected)
    assert torch.equal(net(hidden, indicators), expected)  # indicators are routed on the fly


def test_one_modality_uses_one_branch_and_the_other_gets_no_gradient() -> None:
    torch.manual_seed(1)
    net = MultiwayNetwork(partial(nn.Linear, 8, 8))
    hidden = torch.randn(2, 5, 8)
    routing = ModalityRouting.from_indicators(torch.full((2, 5), TEXT))
    assert routing.only_branch() == TEXT and routing.indices == (None, None)
    net(hidden, routing).sum().backward()
    assert net.multiway[0].weight.grad is not None and net.multiway[1].weight.grad is None
    assert torch.equal(net(hidden, None), net.multiway[0](hidden))


def test_gradients_match_mask_selection() -> None:
    torch.manual_seed(2)
    net = MultiwayNetwork(partial(nn.Linear, 6, 4))
    hidden = torch.randn(2, 7, 6, requires_grad=True)
    indicators = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0, 0]])
    weights = torch.randn(2, 7, 4)
    (net(hidden, ModalityRouting.from_indicators(indicators)) * weights).sum().backward()
    routed = [hidden.grad.clone()] + [p.grad.clone() for p in net.parameters()]
    hidden.grad = None
    net.zero_grad(set_to_none=True)
    (masked_reference(net, hidden, indicators) * weights).sum().backward()
    masked = [hidden.grad] + [p.grad for p in net.parameters()]
    for a, b in zip(routed, masked):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_indicators_outside_the_branches_are_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1.*1 value"):
        ModalityRouting.from_indicators(torch.tensor([[0, 1, 2]]))


# --------------------------------------------------------------------------- token merge


def merged_by_rows(embed: nn.Embedding, ids, feats, mask, labels, side):  # type: ignore[no-untyped-def]
    """The merge written row by row, token by token."""
    rows, it = [], iter(feats)
    for b in range(ids.shape[0]):
        e, m, a, lab = [], [], [], []
        for t in range(ids.shape[1]):
            if ids[b, t] == IMAGE_TOKEN_INDEX:
                f = next(it)
                e += list(f)
                m += [VISUAL] * len(f)
                a += [1] * len(f)
                lab += [IGNORE_INDEX] * len(f)
            else:
                e.append(embed.weight[ids[b, t]])
                m.append(TEXT)
                a.append(int(mask[b, t]))
                lab.append(int(labels[b, t]))
        rows.append((e, m, a, lab))
    longest = max(len(r[0]) for r in rows)
    out_e = torch.zeros(len(rows), longest, embed.embedding_dim)
    out_m = torch.full((len(rows), longest), TEXT)
    out_a = torch.zeros(len(rows), longest, dtype=torch.long)
    out_l = torch.full((len(rows), longest), IGNORE_INDEX)
    for b, (e, m, a, lab) in enumerate(rows):
        cols = slice(longest - len(e), longest) if side == "left" else slice(0, len(e))
        out_e[b, cols] = torch.stack(e)
        out_m[b, cols] = torch.tensor(m)
        out_a[b, cols] = torch.tensor(a)
        out_l[b, cols] = torch.tensor(lab)
    return out_e, out_m, out_a, out_l


@pytest.mark.parametrize("side", ["left", "right"])
def test_merge_places_every_token_as_the_row_by_row_construction(side: str) -> None:
    torch.manual_seed(3)
    embed = nn.Embedding(40, 6)
    ids = torch.tensor([[1, 5, -200, 7, 8], [1, -200, 3, -200, 9], [1, 2, 3, 4, 5], [-200, 4, 4, 4, 4]])
    feats = [torch.randn(n, 6) for n in (3, 1, 4, 2)]
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    labels = torch.randint(0, 40, ids.shape)
    with torch.no_grad():
        got = merge_visual_tokens(embed, ids, feats, mask, labels, side)
        want = merged_by_rows(embed, ids, feats, mask, labels, side)
    assert torch.equal(got["inputs_embeds"], want[0])
    assert torch.equal(got["modality_indicators"], want[1])
    assert torch.equal(got["attention_mask"], want[2]) and got["attention_mask"].dtype == mask.dtype
    assert torch.equal(got["labels"], want[3])


def test_merge_without_mask_or_labels() -> None:
    embed = nn.Embedding(10, 4)
    ids = torch.tensor([[1, -200, 2], [1, 3, -200]])
    with torch.no_grad():
        got = merge_visual_tokens(embed, ids, [torch.ones(2, 4), torch.ones(3, 4)], padding_side="left")
    assert got["labels"] is None
    assert got["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert got["modality_indicators"].tolist() == [[0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    with pytest.raises(ValueError, match="1 image placeholder"):
        merge_visual_tokens(embed, ids[:1], [torch.ones(2, 4), torch.ones(1, 4)])


# --------------------------------------------------------------------------- pixels


@pytest.mark.parametrize(
    "settings",
    [
        ImageSettings(do_resize=False, do_center_crop=False),
        ImageSettings(do_resize=False, do_center_crop=False, do_rescale=False),
        ImageSettings(do_resize=False, do_center_crop=False, do_normalize=False),
    ],
)
def test_pixel_table_equals_the_arithmetic_on_every_pixel(settings: ImageSettings) -> None:
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 256, (20, 20, 3), dtype=np.uint8) for _ in range(3)]
    arrays[0][0, :, :] = np.arange(20)[:, None] * 13  # and a spread of exact levels
    got = preprocess_frames([Image.fromarray(a) for a in arrays], settings)
    x = np.stack(arrays)
    x = (x * settings.rescale_factor).astype(np.float32) if settings.do_rescale else x.astype(np.float32)
    if settings.do_normalize:
        x = (x - np.asarray(settings.image_mean, np.float32)) / np.asarray(settings.image_std, np.float32)
    assert got.dtype == torch.float32 and got.shape == (3, 3, 20, 20)
    assert np.array_equal(got.numpy(), x.transpose(0, 3, 1, 2))
