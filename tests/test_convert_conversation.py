"""Q-Align conversation JSON: exact bytes, question pools, determinism, videos."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from toolkit.convert import (
    IQA_QUESTIONS,
    answer_text,
    conversation_records,
    dumps_conversations,
    labels_from_mos,
    question_pool,
    write_conversations,
)
from toolkit.errors import InputError

FIRST_QUESTION = "How would you rate the quality of this image?"

# The record of the method description, written out by hand (indent 4 as the reference files).
EXPECTED_EXAMPLE = """[
    {
        "id": "10004473376.jpg->77.38",
        "image": "koniq/10004473376.jpg",
        "conversations": [
            {
                "from": "human",
                "value": "How would you rate the quality of this image?\\n<|image|>"
            },
            {
                "from": "gpt",
                "value": "The quality of the image is good."
            }
        ],
        "gt_score": 77.38
    }
]"""


def _table(paths, mos, **kwargs):
    return labels_from_mos(pd.DataFrame({"path": paths, "mos": mos}), **kwargs)


def test_exact_bytes_of_the_reference_example(tmp_path):
    table = _table(["10004473376.jpg"], [77.38], low=0, high=100)
    records = conversation_records(table, prefix="koniq", questions=[FIRST_QUESTION])
    assert dumps_conversations(records) == EXPECTED_EXAMPLE
    out = write_conversations(records, tmp_path / "train.json")
    assert out.read_bytes() == EXPECTED_EXAMPLE.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]  # no temporary file left behind
    # key order is part of the format
    assert list(json.loads(out.read_text())[0]) == ["id", "image", "conversations", "gt_score"]


def test_question_pools_are_the_published_strings():
    assert question_pool("quality", "image") == IQA_QUESTIONS
    assert len(IQA_QUESTIONS) == 9 and FIRST_QUESTION in IQA_QUESTIONS
    video = question_pool("quality", "video")
    assert "Can you rate the quality of this video?" in video
    assert "What's your opinion on the quality of this video?" in video
    assert all("image" not in q and "picture" not in q for q in video)
    aesthetics = question_pool("aesthetics", "image")
    assert "How would you rate the aesthetics of this image?" in aesthetics
    assert all("quality" not in q for q in aesthetics)
    assert answer_text("poor", "aesthetics", "image") == "The aesthetics of the image is poor."
    assert answer_text("fair", "quality", "video") == "The quality of the video is fair."
    with pytest.raises(InputError):
        answer_text("great")


def test_questions_come_from_the_pool_and_depend_only_on_the_seed():
    paths = [f"{i}.jpg" for i in range(60)]
    table = _table(paths, [i % 5 + 1 for i in range(60)], low=1, high=5)
    a = conversation_records(table, seed=7)
    b = conversation_records(table, seed=7)
    c = conversation_records(table, seed=8)
    assert dumps_conversations(a) == dumps_conversations(b)
    questions = [r["conversations"][0]["value"] for r in a]
    assert all(q.endswith("\n<|image|>") and q.count("<|image|>") == 1 for q in questions)
    assert {q[: -len("\n<|image|>")] for q in questions} <= set(IQA_QUESTIONS)
    assert len(set(questions)) > 4  # drawn, not fixed
    assert questions != [r["conversations"][0]["value"] for r in c]
    answers = [r["conversations"][1]["value"] for r in a]
    assert answers[:5] == [f"The quality of the image is {w}." for w in ("bad", "poor", "fair", "good", "excellent")]


def test_soft_label_field_only_when_asked():
    table = _table(["a.jpg", "b.jpg"], [1.0, 5.0])
    assert "level_probs" not in conversation_records(table)[0]
    records = conversation_records(table, soft_labels=True)
    assert list(records[0]) == ["id", "image", "conversations", "gt_score", "level_probs"]
    assert records[0]["level_probs"] == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert records[1]["level_probs"] == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_video_file_frame_folder_and_frame_list(tmp_path):
    root = tmp_path / "media"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "a.mp4").write_bytes(b"not really a video")
    frames = root / "frames" / "b"
    frames.mkdir(parents=True)
    for name in ("002.png", "000.png", "001.png", "notes.txt"):
        (frames / name).write_bytes(b"x")
    frame = pd.DataFrame(
        {
            "path": ["clips/a.mp4", "frames/b", ["frames/c/0.jpg", "frames/c/1.jpg"]],
            "mos": [4.6, 2.0, 3.0],
        }
    )
    table = labels_from_mos(frame, low=1, high=5)
    records = conversation_records(table, kind="video", image_root=root, prefix="lsvq", seed=3)
    assert records[0]["image"] == "lsvq/clips/a.mp4"
    assert records[0]["id"] == "clips/a.mp4->4.6"
    assert records[1]["image"] == ["lsvq/frames/b/000.png", "lsvq/frames/b/001.png", "lsvq/frames/b/002.png"]
    assert records[1]["id"] == "frames/b->2.0"
    assert records[2]["image"] == ["lsvq/frames/c/0.jpg", "lsvq/frames/c/1.jpg"]
    assert records[2]["id"] == "frames/c->3.0"
    video_pool = set(question_pool("quality", "video"))
    for r in records:
        assert r["conversations"][0]["value"].split("\n")[0] in video_pool
        assert r["conversations"][1]["value"].startswith("The quality of the video is ")
    assert [r["conversations"][1]["value"] for r in records] == [
        "The quality of the video is excellent.",
        "The quality of the video is poor.",
        "The quality of the video is fair.",
    ]


def test_absolute_paths_become_relative_to_the_root(tmp_path):
    table = _table([str(tmp_path / "imgs" / "x.png")], [3.0], low=1, high=5)
    record = conversation_records(table, image_root=tmp_path / "imgs")[0]
    assert record["image"] == "x.png" and record["id"] == "x.png->3.0"


def test_frame_folder_without_root_or_list_without_video_is_an_error():
    with pytest.raises(InputError, match="folder of frames"):
        conversation_records(_table(["frames/b"], [3.0], low=1, high=5), kind="video")
    table = labels_from_mos(pd.DataFrame({"path": [["a.png", "b.png"]], "mos": [3.0]}), low=1, high=5)
    with pytest.raises(InputError, match="needs --video"):
        conversation_records(table)
