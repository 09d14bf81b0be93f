"""Score tables without a model: input collection, sharding, merging parts, crash-safe files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.errors import InputError
from toolkit.scoring import COLUMNS, collect_inputs, merge_results, read_results, shard
from toolkit.scoring.results import (
    ResultAppender,
    ResultFile,
    ScoredChunk,
    existing_parts,
    frames_path,
    part_path,
    read_frame_counts,
    write_results,
)


def rows(paths: list[str], score: float = 3.0, error: str = "") -> pd.DataFrame:
    n = len(paths)
    p = np.tile([0.2, 0.2, 0.2, 0.2, 0.2], (n, 1)) if not error else np.full((n, 5), np.nan)
    return pd.DataFrame(
        {
            "path": paths,
            "score": score if not error else np.nan,
            "p_excellent": p[:, 0],
            "p_good": p[:, 1],
            "p_fair": p[:, 2],
            "p_poor": p[:, 3],
            "p_bad": p[:, 4],
            "entropy": 1.6 if not error else np.nan,
            "error": error,
        }
    )


# --------------------------------------------------------------------------- sharding


@pytest.mark.parametrize("n,world", [(10, 3), (2, 4), (0, 2), (7, 1), (8, 8)])
def test_shards_are_contiguous_balanced_and_cover_everything(n: int, world: int) -> None:
    items = list(range(n))
    parts = [shard(items, r, world) for r in range(world)]
    assert sum(parts, []) == items  # in order, nothing lost, nothing twice
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_rejects_a_rank_outside_the_world() -> None:
    with pytest.raises(InputError, match="process index 2"):
        shard([1, 2], 2, 2)


# --------------------------------------------------------------------------- merging


def test_merge_puts_inputs_in_order_and_keeps_other_rows_after() -> None:
    part0 = rows(["a", "b"], 3.0)
    part1 = rows(["c", "d"], 4.0)
    earlier = rows(["old"], 2.0)
    merged = merge_results([earlier, part1, part0], order=["a", "b", "c", "d"])
    assert merged["path"].tolist() == ["a", "b", "c", "d", "old"]
    assert merged["score"].tolist() == [3.0, 3.0, 4.0, 4.0, 2.0]
    assert list(merged.columns) == list(COLUMNS)


def test_merge_prefers_a_score_over_an_error_and_a_retry_over_an_old_error() -> None:
    first = pd.concat([rows(["a"], 3.5), rows(["b"], error="b: file not found")])
    retry = pd.concat([rows(["a"], error="a: cannot decode"), rows(["b"], 2.5)])
    merged = merge_results([first, retry], order=["a", "b"]).set_index("path")
    assert merged.loc["a", "score"] == 3.5 and merged.loc["a", "error"] == ""
    assert merged.loc["b", "score"] == 2.5 and merged.loc["b", "error"] == ""
    again = merge_results([rows(["c"], error="old reason"), rows(["c"], error="new reason")], ["c"])
    assert again["error"].tolist() == ["new reason"]


def test_merge_keeps_gt_score_when_any_source_has_it() -> None:
    with_gt = rows(["a"]).assign(gt_score=[4.2])
    merged = merge_results([with_gt, rows(["b"])], order=["a", "b"])
    assert list(merged.columns) == [*COLUMNS, "gt_score"]
    assert merged["gt_score"].iloc[0] == 4.2 and np.isnan(merged["gt_score"].iloc[1])


# --------------------------------------------------------------------------- files


def test_write_then_read_round_trips_exact_values(tmp_path: Path) -> None:
    df = rows(["x.png", "NA", "001.png"])
    df.loc[0, "score"] = 3.123456789012345
    out = tmp_path / "s.csv"
    write_results(df, out)
    back = read_results(out)
    assert back["path"].tolist() == ["x.png", "NA", "001.png"]  # no NaN or int coercion of paths
    assert back.loc[0, "score"] == 3.123456789012345
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_appender_repairs_a_torn_line_and_aligns_columns(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    write_results(rows(["a"]), out)
    with open(out, "a") as fh:
        fh.write("b,3.0,0.2,0.2")  # torn: no newline
    assert read_results(out)["path"].tolist() == ["a"]
    appender = ResultAppender(out, [*COLUMNS, "gt_score"])
    appender.append(rows(["c"]).assign(gt_score=[1.5]))
    text = out.read_text()
    assert text.splitlines()[0].endswith(",error,gt_score") and "b,3.0" not in text
    back = read_results(out)
    assert back["path"].tolist() == ["a", "c"] and back["gt_score"].iloc[1] == 1.5


@pytest.mark.parametrize("torn", ['"dir/with\nnewline.jpg",3.1', '"dir/with\n', '"dir/with'])
def test_a_torn_record_after_a_newline_in_a_quoted_path_is_dropped_and_refilled(tmp_path: Path, torn: str) -> None:
    out = tmp_path / "s.csv"
    odd = "dir/with\nnewline.jpg"
    write_results(rows(["a", "b,c"]), out)
    with open(out, "a", newline="") as fh:
        fh.write(torn)  # a kill mid-write: the record stops inside or just after the quoted path
    assert read_results(out)["path"].tolist() == ["a", "b,c"]
    assert ResultFile(out).previous().done == {"a", "b,c"}
    ResultAppender(out, COLUMNS).append(rows([odd], score=4.0))  # the rescored row
    back = read_results(out)
    assert back["path"].tolist() == ["a", "b,c", odd] and back["score"].tolist() == [3.0, 3.0, 4.0]


def test_read_refuses_a_file_that_is_not_a_score_table(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text("name,value\nx,1\n")
    with pytest.raises(InputError, match=r"other\.csv: exists but is not a score file"):
        read_results(other)


def test_part_files_are_found_next_to_the_output(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    for rank in range(3):
        write_results(rows([f"p{rank}"]), part_path(out, rank, 3))
    (tmp_path / "scores.csv.bak").write_text("unrelated")
    assert [p.name for p in existing_parts(out)] == [f"scores.csv.part00{r}-of-003" for r in range(3)]


def test_result_file_resumes_from_the_file_and_left_parts_then_merges(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    write_results(pd.concat([rows(["a"]), rows(["b"], error="model failed")]), out)
    write_results(rows(["c"]).assign(gt_score=[2.0]), part_path(out, 1, 2))  # left by a killed run
    output = ResultFile(out)
    previous = output.previous()
    assert previous.done == {"a", "c"} and previous.with_gt  # the error row is not done
    output.appender(0, 2, with_gt=True).append(rows(["b"], score=4.0))
    merged = output.merge(["c", "b", "z"], with_gt=True)
    assert merged["path"].tolist() == ["c", "b", "a"]  # current inputs first, earlier rows after
    assert merged.set_index("path").loc["b", "score"] == 4.0  # the retry replaced the error
    assert not existing_parts(out)
    on_disk = read_results(out)
    assert on_disk["path"].tolist() == ["c", "b", "a"] and list(on_disk.columns) == [*COLUMNS, "gt_score"]


def test_result_file_alone_appends_to_the_output_itself(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    output = ResultFile(out)
    assert output.previous().done == set() and not output.previous().with_gt
    output.appender(0, 1, with_gt=False).append(rows(["a"]))
    assert read_results(out)["path"].tolist() == ["a"] and not existing_parts(out)


def test_result_file_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder; give a CSV file path"):
        ResultFile(tmp_path)


# --------------------------------------------------------------------------- inputs


def test_collect_images_recursively_in_natural_order(tmp_path: Path) -> None:
    for rel in ["b/img10.png", "b/img2.png", "a.jpg", "b/c/x.PNG", "notes.txt", ".hidden.png", "v.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    got = [i.path for i in collect_inputs([tmp_path])]
    assert got == [str(tmp_path / r) for r in ["a.jpg", "b/img2.png", "b/img10.png", "b/c/x.PNG"]]


def test_collect_videos_and_frame_folders(tmp_path: Path) -> None:
    for rel in ["clips/b.mp4", "clips/a.MKV", "clips/frames/f1.png", "clips/frames/f2.png", "still.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = collect_inputs([tmp_path / "clips", tmp_path / "still.png", tmp_path / "clips/b.mp4"], video=True)
    assert [i.path for i in items] == [
        str(tmp_path / r) for r in ["clips/a.MKV", "clips/b.mp4", "clips/frames", "still.png"]
    ]
    assert all(i.kind == "video" for i in items)
    assert items[-1].error and "not a video" in items[-1].error  # the duplicate b.mp4 was dropped


def test_json_manifest_with_frame_lists_is_a_video(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    for i in range(2):
        (tmp_path / "f" / f"{i}.png").write_bytes(b"")
    manifest = tmp_path / "train.json"
    manifest.write_text(json.dumps([{"id": "v1", "image": ["f/0.png", "f/1.png"], "gt_score": "3.25"}]))
    (item,) = collect_inputs([manifest], video=True)
    assert item.frames == (str(tmp_path / "f/0.png"), str(tmp_path / "f/1.png"))
    assert item.gt_score == 3.25 and item.kind == "video" and item.error is None
    (as_image,) = collect_inputs([manifest])
    assert "video=True" in (as_image.error or "")


def test_collect_needs_some_input() -> None:
    with pytest.raises(InputError, match="no inputs"):
        collect_inputs([])


def test_frame_counts_go_to_a_side_file_and_merge_with_the_rows(tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    probs = np.full((3, 5), 0.2)
    probs[2] = np.nan  # an error row: no count kept for it
    chunk = ScoredChunk(["v1.mp4", "v2.mp4", "v3.mp4"], probs, ["", "", "v3.mp4: cannot decode"], None)
    chunk.frames = [(1, 10), (4, 4), None]
    output = ResultFile(out)
    output.appender(1, 2, with_gt=False).append(chunk)
    part = part_path(out, 1, 2)
    assert read_frame_counts(frames_path(part)) == {"v1.mp4": (1, 10), "v2.mp4": (4, 4)}
    assert existing_parts(out) == [part]  # the part's side file is not taken for a part
    read_back = read_results(out.with_name("scores.csv.part001-of-002"))
    assert list(read_back.columns) == list(COLUMNS)  # the score columns are unchanged
    output.merge(["v1.mp4", "v2.mp4", "v3.mp4"], with_gt=False)
    assert output.frame_counts() == {"v1.mp4": (1, 10), "v2.mp4": (4, 4)}
    assert not existing_parts(out) and not frames_path(part).exists()
