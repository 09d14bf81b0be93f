"""HF dataset and Parquet export, and the ``qalign convert`` command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.convert import convert, load_labels, split_table
from toolkit.convert.hf import export_parquet, save_dataset, to_dataset_dict
from toolkit.convert.prompts import IQA_QUESTIONS


@pytest.fixture()
def media(tmp_path: Path) -> tuple[Path, Path]:
    """Eight tiny PNGs in four content groups, one byte-identical copy, and their MOS table."""
    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        Image.fromarray((rng.random((6, 5, 3)) * 255).astype("uint8")).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "mos": 10.0 * (i + 1), "sd": 4.0, "ref": f"ref{i // 2}"})
    (root / "copy_of_3.png").write_bytes((root / "3.png").read_bytes())
    rows.append({"image": "copy_of_3.png", "mos": 41.0, "sd": 4.0, "ref": "ref9"})
    table = tmp_path / "mos.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    return table, root


def test_dataset_dict_save_to_disk_and_parquet(media, tmp_path):
    import datasets

    table_path, root = media
    table = split_table(load_labels(table_path, low=0, high=100, group_by="ref"), "train=0.5,test=0.5", seed=1)
    dd = to_dataset_dict(table, image_root=root, seed=2)
    assert set(dd) == {"train", "test"}
    assert sum(len(d) for d in dd.values()) == 9
    train = dd["train"]
    assert isinstance(train.features["image"], datasets.Image)
    row = train[0]
    assert row["image"].size == (5, 6)
    assert row["question"] in IQA_QUESTIONS
    assert row["answer"] == f"The quality of the image is {row['level']}."
    assert len(row["level_probs"]) == 5 and abs(sum(row["level_probs"]) - 1) < 1e-9
    assert set(train["group"]).isdisjoint(set(dd["test"]["group"]))

    saved = save_dataset(dd, tmp_path / "ds")
    files = export_parquet(dd, tmp_path / "pq", batch_size=2)
    assert sorted(p.name for p in files) == ["test.parquet", "train.parquet"]
    for image in root.iterdir():  # both exports carry the image bytes themselves
        image.unlink()
    reloaded = datasets.load_from_disk(str(saved))
    assert reloaded["train"][0]["image"].size == (5, 6)
    assert reloaded["train"]["mos"] == train["mos"]

    import pyarrow.parquet as pq

    raw = pq.read_table(tmp_path / "pq" / "train.parquet")
    assert raw.num_rows == len(train)
    assert all(cell["bytes"] for cell in raw.column("image").to_pylist())
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "pq" / "train.parquet"))["train"]
    assert isinstance(loaded.features["image"], datasets.Image)
    assert loaded[0]["image"].size == (5, 6)


def test_convert_json_with_dedupe_split_and_summary(media, tmp_path):
    table_path, root = media
    result = convert(table_path, tmp_path / "out", images=root, split="train=0.75,test=0.25", group_by="ref", seed=4)
    assert len(result.duplicates) == 1
    assert result.duplicates.dropped["path"].tolist() == ["copy_of_3.png"]
    train = json.loads((tmp_path / "out" / "train.json").read_text())
    test = json.loads((tmp_path / "out" / "test.json").read_text())
    assert len(train) + len(test) == 8
    train_groups = {int(r["image"][0]) // 2 for r in train}
    test_groups = {int(r["image"][0]) // 2 for r in test}
    assert train_groups.isdisjoint(test_groups)
    summary = json.loads((tmp_path / "out" / "convert_summary.json").read_text())
    assert summary["duplicates_dropped"] == 1 and summary["items"] == 8
    assert (tmp_path / "out" / "dropped_duplicates.csv").read_text().startswith("path,duplicate_of,sha256")
    # same inputs, same seed: same bytes
    convert(table_path, tmp_path / "again", images=root, split="train=0.75,test=0.25", group_by="ref", seed=4)
    assert (tmp_path / "again" / "train.json").read_bytes() == (tmp_path / "out" / "train.json").read_bytes()


def test_cli_convert_parquet_and_single_json(media, tmp_path):
    table_path, root = media
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "convert",
            str(table_path),
            "--out",
            str(tmp_path / "pq"),
            "--format",
            "parquet",
            "--images",
            str(root),
            "--rule",
            "floor",
            "--low",
            "0",
            "--high",
            "100",
            "--task",
            "aesthetics",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "dropped 1 duplicate" in res.output
    frame = pd.read_parquet(tmp_path / "pq" / "all.parquet")
    assert len(frame) == 8
    assert frame["answer"].str.startswith("The aesthetics of the image is ").all()
    # floor rule on [0, 100]: 10 -> 0.5 -> bad, 20 -> 1 -> poor, ..., 80 -> 4 -> excellent
    assert frame.sort_values("mos")["level"].tolist() == [
        "bad",
        "poor",
        "poor",
        "fair",
        "fair",
        "good",
        "good",
        "excellent",
    ]

    res = runner.invoke(app, ["convert", str(table_path), "--out", str(tmp_path / "one.json"), "--dmos", "--seed", "2"])
    assert res.exit_code == 0, res.output
    records = json.loads((tmp_path / "one.json").read_text())
    assert len(records) == 9  # no media root: nothing hashed, nothing dropped
    best = min(records, key=lambda r: r["gt_score"])
    assert best["conversations"][1]["value"] == "The quality of the image is excellent."


def test_cli_error_is_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("image,mos\na.jpg,1\nb.jpg,oops\n")
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "convert", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {bad} line 3: column 'mos' has non-numeric value 'oops'"]
    assert not (tmp_path / "o").exists()


def test_video_datasets_hold_frames_or_file_paths(tmp_path):
    import datasets

    from toolkit.convert import labels_from_mos
    from toolkit.convert.hf import to_hf_dataset

    root = tmp_path / "media"
    for clip in ("c1", "c2"):
        (root / clip).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (4, 3), (40 * k, 0, 0)).save(root / clip / f"{k:03d}.png")
    frames = labels_from_mos(pd.DataFrame({"path": ["c1", "c2"], "mos": [1.0, 5.0]}))
    ds = to_hf_dataset(frames, image_root=root, kind="video", seed=0)
    assert isinstance(ds.features["frames"].feature, datasets.Image)
    assert len(ds[0]["frames"]) == 3 and ds[0]["frames"][2].getpixel((0, 0)) == (80, 0, 0)
    assert ds["answer"] == ["The quality of the video is bad.", "The quality of the video is excellent."]
    assert ds["path"] == ["c1", "c2"]

    (root / "v.mp4").write_bytes(b"\x00")
    (root / "w.mp4").write_bytes(b"\x01")
    files = labels_from_mos(pd.DataFrame({"path": ["v.mp4", "w.mp4"], "mos": [2.0, 3.0]}))
    ds = to_hf_dataset(files, image_root=root, kind="video", seed=0)
    assert ds["video"] == ["v.mp4", "w.mp4"]
