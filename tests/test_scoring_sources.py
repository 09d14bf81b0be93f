"""Shards of samples as scoring inputs: WebDataset tar files, Parquet files and datasets folders
give the scores of the same images in a folder, under stable keys, read as streams."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from toolkit.errors import InputError
from toolkit.scoring import COLUMNS, PROB_COLUMNS, Scorer, read_results
from toolkit.scoring.inputs import collect_inputs, plan_inputs
from toolkit.scoring.sources import ShardSource

if TYPE_CHECKING:
    import torch


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    from toolkit.models.loading import load_backbone

    return Scorer(load_backbone("tiny"), batch_size=3, progress=False)


def make_images(folder: Path, n: int, seed: int = 0, start: int = 0) -> list[Path]:
    """Small PNG and JPEG images of varied sizes and content, named img<i>."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        arr = rng.integers(0, 256, (20 + 4 * (i % 5), 28 + 3 * (i % 3), 3), dtype=np.uint8)
        arr[: 6 + i % 7] = rng.integers(0, 256, 3, dtype=np.uint8)
        p = folder / f"img{i}.{'jpg' if i % 3 == 2 else 'png'}"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, images: list[Path], folder: str = "s") -> Path:
    """A WebDataset shard: each sample an image and a JSON member under one key."""
    with tarfile.open(path, "w") as tar:
        for p in images:
            add_member(tar, f"{folder}/{p.stem}{p.suffix}", p.read_bytes())
            add_member(tar, f"{folder}/{p.stem}.json", b'{"source": "test"}')
    return path


def write_parquet(path: Path, images: list[Path], struct: bool = True, row_group_size: int = 4) -> Path:
    cells = [{"bytes": p.read_bytes(), "path": p.name} if struct else p.read_bytes() for p in images]
    table = pa.table({"name": [p.stem for p in images], "image": cells})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_dataset(folder: Path, images: list[Path]) -> Path:
    """A datasets folder written by save_to_disk (the Image feature: {bytes, path} structs)."""
    import datasets

    cells = [{"bytes": p.read_bytes(), "path": None} for p in images]
    ds = datasets.Dataset.from_dict({"name": [p.stem for p in images], "image": cells})
    ds.cast_column("image", datasets.Image()).save_to_disk(str(folder))
    return folder


def probs(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    return df.set_index("path").loc[keys, list(PROB_COLUMNS)].to_numpy(dtype=float)


def test_tar_parquet_and_dataset_score_like_the_same_images_in_a_folder(scorer: Scorer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "imgs", 7)
    folder = scorer.score([tmp_path / "imgs"])
    expected = probs(folder, [str(p) for p in images])
    tar = write_tar(tmp_path / "a.tar", images)
    struct = write_parquet(tmp_path / "a.parquet", images)
    binary = write_parquet(tmp_path / "b.parquet", images, struct=False)
    ds = write_dataset(tmp_path / "ds", images)
    arrow = next(ds.glob("*.arrow"))
    cases: list[tuple[Path, str | None, list[str]]] = [
        (tar, None, [f"{tar}/s/{p.stem}" for p in images]),
        (struct, "name", [f"{struct}#{p.stem}" for p in images]),
        (binary, None, [f"{binary}#{i}" for i in range(len(images))]),  # the row number by default
        (ds, "name", [f"{arrow}#{p.stem}" for p in images]),
    ]
    for inputs, id_column, keys in cases:
        df = scorer.score([inputs], id_column=id_column)
        assert df["path"].tolist() == keys and (df["error"] == "").all(), inputs
        assert np.abs(probs(df, keys) - expected).max() < 1e-6, inputs
    # Decoding workers read whole shards (two at once here) and give the same.
    both = scorer.score([tar, struct], num_workers=2, id_column="name")
    keys = [f"{tar}/s/{p.stem}" for p in images] + [f"{struct}#{p.stem}" for p in images]
    assert both["path"].tolist() == keys
    assert np.abs(probs(both, keys) - np.vstack([expected, expected])).max() < 1e-6


def test_a_corrupt_sample_gets_its_reason_and_the_rest_is_scored(scorer: Scorer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "imgs", 3)
    tar, table = tmp_path / "bad.tar", tmp_path / "bad.parquet"
    with tarfile.open(tar, "w") as archive:
        add_member(archive, "a.png", images[0].read_bytes())
        add_member(archive, "b.jpg", b"not a jpeg at all")
        add_member(archive, "c.png", images[1].read_bytes()[:60])  # cut short
        add_member(archive, "d.png", images[2].read_bytes())
    cells = [{"bytes": images[0].read_bytes(), "path": None}, {"bytes": b"junk", "path": None}, None]
    pq.write_table(pa.table({"image": cells}), table)
    df = scorer.score([tar, table]).set_index("path")
    assert df.loc[[f"{tar}/a", f"{tar}/d", f"{table}#0"], "score"].notna().all()
    assert "not a readable image" in df.loc[f"{tar}/b", "error"] and f"{tar}/b" in df.loc[f"{tar}/b", "error"]
    assert df.loc[f"{tar}/c", "error"] and np.isnan(df.loc[f"{tar}/c", "score"])
    assert "not a readable image" in df.loc[f"{table}#1", "error"]
    assert "no image in the cell" in df.loc[f"{table}#2", "error"]


def test_a_truncated_tar_keeps_the_samples_before_the_damage(scorer: Scorer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "imgs", 6)
    whole = write_tar(tmp_path / "whole.tar", images).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: len(whole) // 2 + 100])  # the middle of a member's data
    source = ShardSource(str(cut), "tar")
    first = next(source.items())  # a stream: the first sample comes before the damage is reached
    assert first.path == f"{cut}/s/img0" and first.data == images[0].read_bytes()
    df = scorer.score([cut]).set_index("path")
    scored = df.index[df["error"] == ""].tolist()
    assert scored == [f"{cut}/s/img{i}" for i in range(len(scored))] and 1 <= len(scored) < 6
    failed = df[df["error"] != ""]
    assert str(cut) in failed.index  # the shard's own row says where reading stopped
    assert "unreadable after" in failed.loc[str(cut), "error"]
    assert set(source.keys()) == set(df.index)  # the listing and the stream agree


def test_an_unreadable_shard_is_one_error_row_and_the_run_goes_on(scorer: Scorer, tmp_path: Path) -> None:
    images = make_images(tmp_path / "imgs", 2)
    good = write_parquet(tmp_path / "a.parquet", images)
    pq.write_table(pa.table({"picture": [images[0].read_bytes()]}), tmp_path / "b.parquet")  # another schema
    (tmp_path / "c.parquet").write_bytes(b"PAR1 but not really")
    (tmp_path / "d.tar").write_bytes(b"not a tar archive" * 40)
    inputs = [good, tmp_path / "b.parquet", tmp_path / "c.parquet", tmp_path / "d.tar"]
    df = scorer.score(inputs).set_index("path")
    assert df.loc[[f"{good}#0", f"{good}#1"], "score"].notna().all()
    errors = df.loc[[str(p) for p in inputs[1:]], "error"].tolist()
    assert "no image column 'image' (columns: picture)" in errors[0]
    assert errors[1].startswith(f"{tmp_path / 'c.parquet'}: unreadable at its start")
    assert errors[2].startswith(f"{tmp_path / 'd.tar'}: unreadable at its start (ReadError")


def test_decoding_workers_share_a_shard_in_disjoint_parts(tmp_path: Path) -> None:
    import datasets

    images = make_images(tmp_path / "imgs", 5)
    many = [images[i % 5] for i in range(150)]  # 150 rows: three blocks of 64 rows in an Arrow file
    pq.write_table(pa.table({"image": [p.read_bytes() for p in many]}), tmp_path / "t.parquet", row_group_size=20)
    datasets.Dataset.from_dict({"image": [p.read_bytes() for p in many]}).save_to_disk(str(tmp_path / "ds"))
    with tarfile.open(tmp_path / "t.tar", "w") as tar:
        for i, p in enumerate(many[:40]):
            add_member(tar, f"{i:04d}{p.suffix}", p.read_bytes())
    arrow = next((tmp_path / "ds").glob("*.arrow"))
    for source in [
        ShardSource(str(tmp_path / "t.tar"), "tar"),
        ShardSource(str(tmp_path / "t.parquet"), "parquet"),
        ShardSource(str(arrow), "arrow"),
    ]:
        whole = [(it.path, it.data) for it in source.items()]
        assert [k for k, _ in whole] == source.keys() and all(d for _, d in whole)
        parts = [[(it.path, it.data) for it in source.items(part=k, parts=3)] for k in range(3)]
        assert all(parts) and sorted(sum(parts, [])) == sorted(whole), source.format  # each sample once


def test_samples_are_grouped_by_key_and_ids_stay_text(tmp_path: Path) -> None:
    (img,) = make_images(tmp_path / "imgs", 1)
    with tarfile.open(tmp_path / "k.tar", "w") as tar:
        add_member(tar, "./dir/0001.jpg", img.read_bytes())
        add_member(tar, "dir/0001.seg.png", b"a mask, not the sample's image")
        add_member(tar, "dir/0001.json", b"{}")
        add_member(tar, "dir/._0002.jpg", b"macOS metadata")
        add_member(tar, "dir/0003.txt", b"no image: not a sample")
        add_member(tar, "007.webp", img.read_bytes())
    source = ShardSource(str(tmp_path / "k.tar"), "tar")
    assert source.keys() == [f"{tmp_path / 'k.tar'}/dir/0001", f"{tmp_path / 'k.tar'}/007"]
    assert [it.data for it in source.items()] == [img.read_bytes()] * 2
    pq.write_table(
        pa.table({"id": ["007", " 8", "007"], "n": [7, 8, 9], "image": [img.read_bytes()] * 3}), tmp_path / "i.parquet"
    )
    text = ShardSource(str(tmp_path / "i.parquet"), "parquet", id_column="id").keys()
    assert text == [f"{tmp_path / 'i.parquet'}#007", f"{tmp_path / 'i.parquet'}#8"]  # a repeated id scored once
    numbers = ShardSource(str(tmp_path / "i.parquet"), "parquet", id_column="n").keys()
    assert numbers == [f"{tmp_path / 'i.parquet'}#{n}" for n in (7, 8, 9)]


def test_a_dataset_of_image_files_and_a_table_of_paths_read_the_files(scorer: Scorer, tmp_path: Path) -> None:
    import datasets

    images = make_images(tmp_path / "imgs", 3)
    ds = datasets.Dataset.from_dict({"image": [str(p) for p in images]}).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ds"))  # save_to_disk keeps the paths of image files
    pq.write_table(pa.table({"file": [p.name for p in images] + ["gone.png"]}), tmp_path / "imgs" / "p.parquet")
    by_path = scorer.score([tmp_path / "imgs" / "p.parquet"], image_column="file")
    assert (by_path["error"] == "").sum() == 3 and "gone.png" in by_path["error"].iloc[3]  # relative to the file
    from_ds = scorer.score([tmp_path / "ds"])
    assert np.abs(from_ds[list(PROB_COLUMNS)].to_numpy() - by_path[list(PROB_COLUMNS)].to_numpy()[:3]).max() < 1e-6


def test_a_dataset_dict_folder_is_every_split(tmp_path: Path) -> None:
    import datasets

    images = make_images(tmp_path / "imgs", 3)
    split = {"image": [p.read_bytes() for p in images], "name": [p.stem for p in images]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(split), "test": datasets.Dataset.from_dict(split).select([2])}
    ).save_to_disk(str(tmp_path / "dd"))
    plan = plan_inputs([tmp_path / "dd"], id_column="name")
    assert [Path(s.path).parent.name for s in plan.shards] == ["train", "test"]
    assert [k.rpartition("#")[2] for k in plan.keys()] == ["img0", "img1", "img2", "img2"]


def test_a_wrong_column_is_refused_in_one_line_before_scoring(tmp_path: Path) -> None:
    (img,) = make_images(tmp_path / "imgs", 1)
    pq.write_table(pa.table({"jpg": [img.read_bytes()], "n": [1]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match=r"x\.parquet: no image column 'image' \(columns: jpg, n\); name it with"):
        plan_inputs([tmp_path / "x.parquet"])
    with pytest.raises(InputError, match="column 'n' holds int64, not images"):
        plan_inputs([tmp_path / "x.parquet"], image_column="n")
    with pytest.raises(InputError, match="no id column 'key'"):
        plan_inputs([tmp_path / "x.parquet"], image_column="jpg", id_column="key")
    write_tar(tmp_path / "v.tar", [img])
    with pytest.raises(InputError, match="v.tar: a shard of images; --video takes"):
        plan_inputs([tmp_path / "v.tar"], video=True)
    with pytest.raises(InputError, match="a shard of samples"):
        collect_inputs([tmp_path / "v.tar"])


def test_a_quoted_pattern_lists_shards_in_natural_order(tmp_path: Path) -> None:
    (img,) = make_images(tmp_path / "imgs", 1)
    for n in (10, 2, 1):
        write_tar(tmp_path / f"shard-{n}.tar", [img])
    plan = plan_inputs([str(tmp_path / "shard-*.tar"), str(tmp_path / "shard-2.tar")])
    assert [Path(s.path).name for s in plan.shards] == ["shard-1.tar", "shard-2.tar", "shard-10.tar"]  # once each


def test_a_resumed_run_passes_over_the_scored_samples_of_a_shard(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = make_images(tmp_path / "imgs", 8)
    tar = write_tar(tmp_path / "a.tar", images)
    out = tmp_path / "scores.csv"
    real = scorer.backbone.level_logits
    seen: list[int] = []

    def dies_in_the_third_batch(batch: dict) -> torch.Tensor:
        if len(seen) == 2:
            raise KeyboardInterrupt
        return counted(batch)

    def counted(batch: dict) -> torch.Tensor:
        seen.append(len(batch["input_ids"]))
        return real(batch)

    monkeypatch.setattr(scorer.backbone, "level_logits", dies_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        scorer.score([tar], out=out)
    assert len(read_results(out)) == 6
    monkeypatch.setattr(scorer.backbone, "level_logits", counted)
    df = scorer.score([tar], out=out)
    assert seen[2:] == [2]  # the two samples left, nothing else
    assert out.read_text().splitlines()[0] == ",".join(COLUMNS)
    reference = scorer.score([tmp_path / "imgs"])
    assert df["path"].tolist() == [f"{tar}/s/{p.stem}" for p in images]
    assert np.abs(df[list(PROB_COLUMNS)].to_numpy() - reference[list(PROB_COLUMNS)].to_numpy()).max() < 1e-6


def test_cli_scores_a_parquet_by_its_columns(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from toolkit.cli import app

    images = make_images(tmp_path / "imgs", 2)
    pq.write_table(pa.table({"key": ["=a", "b"], "picture": [p.read_bytes() for p in images]}), tmp_path / "t.parquet")
    out = tmp_path / "s.csv"
    args = ["score", "--model", "tiny", "--device", "cpu", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--image-column", "picture", "--id-column", "key", str(tmp_path / "t.parquet")]
    )
    assert result.exit_code == 0, result.output
    assert "2 of 2 input(s) scored" in result.output
    df = read_results(out)  # the key "=a" was written formula-safe and reads back as it was
    assert df["path"].tolist() == [f"{tmp_path / 't.parquet'}#=a", f"{tmp_path / 't.parquet'}#b"]
