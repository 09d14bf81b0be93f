"""DataLoader workers: model inputs built in the workers, frames not shipped back, and the
one-at-a-time retry of a failed batch decoding its inputs again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from toolkit.scoring import PROB_COLUMNS, Scorer
from toolkit.scoring.decode import BatchPreparer, BatchVisuals, DecodeDataset, detach_preprocessing
from toolkit.scoring.inputs import collect_inputs


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone("tiny"), batch_size=4, progress=False)


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + 3 * i, 30, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_workers_send_model_inputs_without_the_frames(scorer: Scorer, tmp_path: Path) -> None:
    paths = make_images(tmp_path, 3)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    items = collect_inputs([*map(str, paths), str(tmp_path / "broken.png")], False)
    loader = DataLoader(
        DecodeDataset(items),
        batch_size=4,
        num_workers=1,
        collate_fn=BatchPreparer(detach_preprocessing(scorer.backbone), items, "quality"),
    )
    (batch,) = list(loader)
    assert batch.prepared["image"][0] == [0, 1, 2]
    good, bad = batch.decoded[:3], batch.decoded[3]
    assert all(d.frames is None and d.released and d.usable for d in good)
    assert bad.error and not bad.usable
    # The frames come back on demand, as the main process decodes them.
    again = BatchVisuals(good, items, None)
    assert len(again) == 3
    for frames, path in zip(again, paths):
        assert np.array_equal(np.asarray(frames[0]), np.asarray(Image.open(path).convert("RGB")))


def test_in_process_batches_keep_their_frames(scorer: Scorer, tmp_path: Path) -> None:
    paths = make_images(tmp_path, 2)
    items = collect_inputs(list(map(str, paths)), False)
    batch = BatchPreparer(scorer.backbone, items, "quality")([DecodeDataset(items)[i] for i in range(2)])
    assert all(d.frames is not None and not d.released for d in batch.decoded)


def test_a_failed_batch_is_retried_from_decoded_again_frames(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = make_images(tmp_path, 5)
    expected = scorer.score(paths, batch_size=1)
    real = scorer.backbone.level_logits

    def single_only(batch):  # type: ignore[no-untyped-def]
        if len(batch["input_ids"]) > 1:
            raise RuntimeError("simulated out of memory")
        return real(batch)

    monkeypatch.setattr(scorer.backbone, "level_logits", single_only)
    df = scorer.score(paths, batch_size=4, num_workers=2)
    assert (df["error"] == "").all()
    got, want = df[list(PROB_COLUMNS)].to_numpy(float), expected[list(PROB_COLUMNS)].to_numpy(float)
    assert np.abs(got - want).max() < 1e-6


def test_automatic_worker_count_follows_the_device_and_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from toolkit.scoring import auto_num_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert auto_num_workers("cpu") == 0  # the model needs the cores
    assert auto_num_workers("cuda") == 14 and auto_num_workers("cuda:1") == 14
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four GPU processes share the node's cores
    assert auto_num_workers("cuda") == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(256)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert auto_num_workers("cuda") == 16  # more workers than a GPU can use only cost memory
