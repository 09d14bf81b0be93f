"""Image opening, square padding and video frame sampling."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.errors import InputError
from toolkit.media import (
    cap_indices,
    expand2square,
    load_video_frames,
    natural_key,
    open_image,
    pad_color,
    reference_indices,
)

from conftest import ONEALIGN_TINY

BANDS = 8  # a frame shows its own index as 8 black/white vertical bands (bit b -> band b)


def coded_frame(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame whose index survives lossy compression: wide bands, full black or white."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    band = width // BANDS
    for b in range(BANDS):
        if index >> b & 1:
            img[:, b * band : (b + 1) * band] = 255
    return img


def read_code(frame: Image.Image) -> int:
    arr = np.asarray(frame.convert("L"), dtype=float)
    band = arr.shape[1] // BANDS
    bits = [arr[:, b * band + 2 : (b + 1) * band - 2].mean() > 128 for b in range(BANDS)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def write_clip(path: Path, n_frames: int, fps: Fraction | int, codec: str = "libx264") -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(coded_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# --------------------------------------------------------------------------- images


def test_expand2square_geometry_and_colour_landscape() -> None:
    img = Image.new("RGB", (10, 5), (255, 0, 0))
    out = expand2square(img)
    assert out.size == (10, 10)
    arr = np.asarray(out)
    # (10 - 5) // 2 = 2 rows of padding above, 3 below
    assert (arr[:2] == (122, 116, 104)).all()
    assert (arr[2:7] == (255, 0, 0)).all()
    assert (arr[7:] == (122, 116, 104)).all()


def test_expand2square_geometry_portrait_odd_and_square_unchanged() -> None:
    img = Image.new("RGB", (4, 9), (0, 0, 255))
    arr = np.asarray(expand2square(img, fill=(1, 2, 3)))
    assert arr.shape == (9, 9, 3)
    # offset (9 - 4) // 2 = 2 columns on the left, 3 on the right
    assert (arr[:, :2] == (1, 2, 3)).all()
    assert (arr[:, 2:6] == (0, 0, 255)).all()
    assert (arr[:, 6:] == (1, 2, 3)).all()
    square = Image.new("RGB", (7, 7))
    assert expand2square(square) is square


def test_pad_colour_is_int_255_times_clip_mean() -> None:
    assert pad_color() == (122, 116, 104)


def test_expand2square_matches_reference_fixture_sizes() -> None:
    images = ONEALIGN_TINY / "images"
    for f in sorted(images.glob("img*.png")):
        img = open_image(f)
        w, h = img.size
        out = expand2square(img)
        side = max(w, h)
        assert out.size == (side, side)
        x0, y0 = (side - w) // 2, (side - h) // 2
        assert np.array_equal(np.asarray(out)[y0 : y0 + h, x0 : x0 + w], np.asarray(img))


def test_open_image_converts_to_rgb(tmp_path: Path) -> None:
    p = tmp_path / "grey.png"
    Image.new("L", (5, 3), 77).save(p)
    img = open_image(p)
    assert img.mode == "RGB" and img.size == (5, 3)
    assert img.getpixel((0, 0)) == (77, 77, 77)


def test_open_image_errors_name_file_and_reason(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")

    with pytest.raises(InputError, match=r"truncated\.jpg.*(truncated|decode)"):
        open_image(truncated)
    with pytest.raises(InputError, match=r"garbage\.png.*not a readable image"):
        open_image(garbage)
    with pytest.raises(InputError, match=r"missing\.png: file not found"):
        open_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a folder"):
        open_image(tmp_path)


# --------------------------------------------------------------------------- video sampling


def test_reference_indices_rule() -> None:
    fps = 30000 / 1001
    n = 105
    assert reference_indices(n, fps) == [int(fps * i) for i in range(int(n / fps))] == [0, 29, 59]
    assert reference_indices(10, 25.0) == [0]  # under one second: still one frame
    assert reference_indices(0, 25.0) == []


def test_cap_indices_uniform_and_says_so() -> None:
    kept, note = cap_indices(list(range(0, 300, 10)), 4)
    assert kept == [0, 100, 190, 290]
    assert note is not None and "30" in note and "4" in note
    assert cap_indices([0, 25], 4) == ([0, 25], None)


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_video_sampling_matches_reference_rule(tmp_path: Path, codec: str) -> None:
    rate = Fraction(30000, 1001)
    clip = write_clip(tmp_path / f"clip_{codec}.mp4", 105, rate, codec)
    results = [load_video_frames(clip, backend=b) for b in ("decord", "pyav")]
    for vf in results:
        assert vf.total_frames == 105
        assert vf.fps == pytest.approx(float(rate), rel=1e-3)
        expected = [int(vf.fps * i) for i in range(int(vf.total_frames / vf.fps))]
        assert vf.indices == expected == [0, 29, 59]
        # The frames really are the frames at those positions.
        assert [read_code(f) for f in vf.frames] == expected
        assert vf.note is None
        assert all(f.mode == "RGB" and f.size == (64, 48) for f in vf.frames)
    assert [r.backend for r in results] == ["decord", "pyav"]


def test_short_clip_gives_one_frame(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "short.mp4", 8, 25)
    vf = load_video_frames(clip)
    assert vf.indices == [0] and len(vf.frames) == 1 and read_code(vf.frames[0]) == 0


def test_frame_cap_subsamples_and_notes(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "long.mp4", 100, 10)  # 10 s at 10 fps -> 10 sampled frames
    full = load_video_frames(clip)
    assert full.indices == list(range(0, 100, 10))
    capped = load_video_frames(clip, max_frames=3)
    assert capped.indices == [0, 40, 90]  # linspace(0, 9, 3) rounded
    assert [read_code(f) for f in capped.frames] == [0, 40, 90]
    assert capped.note is not None and "max_frames=3" in capped.note
    with pytest.raises(InputError, match="max_frames"):
        load_video_frames(clip, max_frames=0)


def test_pyav_fallback_when_decord_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_clip(tmp_path / "clip.mp4", 50, 20)
    monkeypatch.setitem(sys.modules, "decord", None)  # import decord -> ImportError
    vf = load_video_frames(clip)
    assert vf.backend == "pyav"
    assert vf.indices == [0, 20] and [read_code(f) for f in vf.frames] == [0, 20]
    assert any("decord unavailable" in w for w in vf.warnings)


def test_pyav_fallback_when_decord_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import decord

    clip = write_clip(tmp_path / "clip.mp4", 50, 20)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot find video stream")

    monkeypatch.setattr(decord, "VideoReader", broken)
    vf = load_video_frames(clip)
    assert vf.backend == "pyav" and vf.indices == [0, 20]
    assert any("decord failed" in w and "video stream" in w for w in vf.warnings)


def test_undecodable_clips_raise_input_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 definitely not a video" * 50)
    with pytest.raises(InputError, match=r"garbage\.mp4"):
        load_video_frames(garbage)
    clip = write_clip(tmp_path / "clip.mp4", 40, 20)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[:300])
    with pytest.raises(InputError, match=r"cut\.mp4"):
        load_video_frames(cut)
    with pytest.raises(InputError, match="file not found"):
        load_video_frames(tmp_path / "nope.mp4")


# --------------------------------------------------------------------------- frame folders


def test_frame_folder_is_a_video_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1, 33, 3):
        Image.fromarray(coded_frame(i)).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    vf = load_video_frames(folder)
    assert vf.backend == "folder" and vf.fps is None and vf.total_frames == 5
    assert [read_code(f) for f in vf.frames] == [1, 2, 3, 10, 33]
    capped = load_video_frames(folder, max_frames=2)
    assert [read_code(f) for f in capped.frames] == [1, 33] and capped.note


def test_empty_frame_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no frame images"):
        load_video_frames(tmp_path)


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["f10.png", "f2.png", "F1.png", "f2b.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f2.png", "f2b.png", "f10.png"]


def test_natural_key_compares_a_name_with_its_numbered_sibling() -> None:
    # "cam" is a prefix of "cam2": the tie-breaking path once met the number 2 and raised TypeError.
    names = ["rig/cam2", "rig/cam", "rig/cam10", "rig/Cam1", "rig/cam02"]
    assert sorted(names, key=natural_key) == ["rig/cam", "rig/Cam1", "rig/cam02", "rig/cam2", "rig/cam10"]
    assert sorted(["2", "a", "", "a1b"], key=natural_key) == ["", "2", "a", "a1b"]


# --------------------------------------------------------------------------- truncated videos


def write_faststart_clip(path: Path, n_frames: int, fps: int) -> Path:
    """An MP4 with its index (moov) before the frames, as web videos are; noisy rows keep the
    frames large so that a cut through the file removes frames, not just the index."""
    import av

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            arr = coded_frame(i)
            arr[-8:] = rng.integers(0, 256, arr[-8:].shape, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut_clip(clip: Path, fraction: float, to: Path) -> Path:
    data = clip.read_bytes()
    to.write_bytes(data[: int(len(data) * fraction)])
    return to


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_a_truncated_faststart_mp4_says_how_many_frames_it_decoded(tmp_path: Path, backend: str) -> None:
    clip = write_faststart_clip(tmp_path / "full.mp4", 100, 10)  # 10 s -> 10 sampled frames
    full = load_video_frames(clip, backend=backend)  # type: ignore[arg-type]
    assert full.decoded == full.sampled == 10 and not full.short and full.shortfall is None

    cut = cut_clip(clip, 0.1, tmp_path / "cut.mp4")
    vf = load_video_frames(cut, backend=backend)  # type: ignore[arg-type]
    assert 1 <= vf.decoded < 10 and vf.sampled == 10 and vf.short
    assert vf.shortfall is not None and f"decoded {vf.decoded} of 10 sampled frames" in vf.shortfall
    assert [read_code(f) for f in vf.frames] == vf.indices == [10 * i for i in range(vf.decoded)]

    # The cap applies to what the sampling asks for: 3 of 10 asked, fewer decoded.
    capped = load_video_frames(cut_clip(clip, 0.5, tmp_path / "half.mp4"), max_frames=3, backend=backend)  # type: ignore[arg-type]
    assert capped.sampled == 3 and capped.decoded < 3


def test_a_frame_folder_is_never_short(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(coded_frame(i)).save(tmp_path / f"f{i}.png")
    vf = load_video_frames(tmp_path)
    assert vf.decoded == vf.sampled == 3 and not vf.short
