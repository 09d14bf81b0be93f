"""The score table: its columns, crash-safe appending, reading back for resume, merging parts.

A long run appends each finished chunk to the output CSV as one ``write`` of whole lines,
flushed and synced, so a killed run loses at most the chunk in flight. Reading tolerates the
torn last line such a kill can leave. When several processes score one input list, each
appends to its own part file next to the output, and the main process merges everything
into the output in input order at the end.

Two side files live beside the output: ``<output>.qalign.json`` records how the scores were made
(see :mod:`toolkit.scoring.provenance`), and ``<output>.frames.csv`` says, for each scored video,
how many of the frames its sampling asked for were decoded (a truncated file yields fewer). They
keep the score CSV's columns as they are.

Text cells (``path``, ``error``) are written through :func:`toolkit.io.csv_safe_value`, so a file
called ``=cmd.jpg`` cannot reach a spreadsheet as a formula, and read back through
:func:`toolkit.io.csv_unescape_value`, so a resumed run matches every path exactly.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toolkit.errors import InputError
from toolkit.io import csv_safe, csv_safe_value, csv_unescape_value
from toolkit.levels import entropy
from toolkit.qalign import PROB_COLUMNS, expected_score
from toolkit.scoring.provenance import Provenance, check_resumable, write_record

COLUMNS: tuple[str, ...] = ("path", "score", *PROB_COLUMNS, "entropy", "error")
"""Output columns, in order; ``gt_score`` follows only when a manifest provided it."""
NUMERIC_COLUMNS: tuple[str, ...] = ("score", *PROB_COLUMNS, "entropy", "gt_score")
FRAME_COLUMNS: tuple[str, ...] = ("path", "frames_decoded", "frames_sampled")
"""Columns of the frame-count side file of a video run."""

FrameCounts = dict[str, tuple[int, int]]
"""Path -> (frames decoded, frames the sampling asked for), for scored videos."""


@dataclass
class ScoredChunk:
    """Rows of one batch as plain arrays; turning every batch into a DataFrame costs more
    than scoring it with a small model."""

    paths: list[str]
    probs: np.ndarray  # (n, 5), LEVELS order; NaN rows where ``errors`` is set
    errors: list[str]
    gt_scores: list[float | None] | None = None
    frames: list[tuple[int, int] | None] | None = None  # (decoded, sampled) per video row

    def frame_counts(self) -> FrameCounts:
        """(decoded, sampled) of the rows that were scored from video frames."""
        if self.frames is None:
            return {}
        ok = np.isfinite(self.probs).all(axis=1)
        return {p: f for p, f, good in zip(self.paths, self.frames, ok) if f is not None and good}

    def columns(self) -> dict[str, Any]:
        ok = np.isfinite(self.probs).all(axis=1)
        safe = np.where(ok[:, None], self.probs, 0.2)
        cols: dict[str, Any] = {"path": self.paths, "score": np.where(ok, expected_score(safe), np.nan)}
        cols.update({name: self.probs[:, k] for k, name in enumerate(PROB_COLUMNS)})
        cols["entropy"] = np.where(ok, entropy(safe), np.nan)
        cols["error"] = self.errors
        if self.gt_scores is not None:
            cols["gt_score"] = np.array([np.nan if g is None else g for g in self.gt_scores], dtype=float)
        return cols

    def csv_text(self, columns: Sequence[str]) -> str:
        """The rows as CSV lines under a header of ``columns`` (numbers at full precision)."""
        cols = self.columns()
        n = len(self.paths)
        fields = [cols.get(c, [None] * n) for c in columns]
        rows = [[_cell(f[i]) for f in fields] for i in range(n)]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator=_line_end(cell for row in rows for cell in row))
        writer.writerows(rows)
        return buf.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else repr(float(value))  # repr: shortest exact form
    return str(csv_safe_value(str(value)))


def _line_end(cells: Iterable[Any]) -> str:
    """The line terminator: LF, or CRLF when a cell holds a CR. The csv module quotes a field only
    for the characters of its line terminator, and a spreadsheet starts a new row at a bare CR
    (whose first cell could be a formula). Readers take both endings, even mixed in one file."""
    return "\r\n" if any(isinstance(c, str) and "\r" in c for c in cells) else "\n"


def chunks_to_frame(chunks: Sequence[ScoredChunk], with_gt: bool) -> pd.DataFrame:
    if not chunks:
        return empty_results(with_gt)
    merged = ScoredChunk(
        [p for c in chunks for p in c.paths],
        np.vstack([c.probs for c in chunks]),
        [e for c in chunks for e in c.errors],
        [g for c in chunks for g in (c.gt_scores or [None] * len(c.paths))] if with_gt else None,
    )
    return normalise(pd.DataFrame(merged.columns()))


def output_columns(with_gt: bool) -> list[str]:
    return [*COLUMNS, "gt_score"] if with_gt else list(COLUMNS)


def empty_results(with_gt: bool = False) -> pd.DataFrame:
    return normalise(pd.DataFrame(columns=output_columns(with_gt)))


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Typed columns: ``path`` and ``error`` strings (``""`` = no error), the rest floats."""
    df = df.copy()
    df["path"] = df["path"].astype(str)
    df["error"] = df["error"].fillna("").astype(str)
    for col in NUMERIC_COLUMNS:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def is_done(df: pd.DataFrame) -> pd.Series:
    """Rows that hold a finished score (no error, every number present)."""
    numbers = df[["score", *PROB_COLUMNS, "entropy"]].to_numpy(dtype=float)
    return (df["error"] == "") & np.isfinite(numbers).all(axis=1)


# --------------------------------------------------------------------------- reading


def read_results(path: str | Path) -> pd.DataFrame:
    """A score CSV as written by this module; a torn last line (no newline) is ignored."""
    path = Path(path)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return empty_results()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read existing scores ({exc})") from None
    if not text.strip():
        return empty_results()
    rows = _complete_records(text)
    if not rows:
        return empty_results()
    header, body = rows[0], rows[1:]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{path}: exists but is not a score file (missing column(s) {', '.join(missing)});"
            " choose another output path"
        )
    body = [r for r in body if len(r) == len(header)]
    df = pd.DataFrame(body, columns=header)
    keep = output_columns("gt_score" in header)
    df = df[keep].copy()
    for col in ("path", "error"):
        df[col] = df[col].map(csv_unescape_value)
    return normalise(df)


def finished_paths(path: str | Path, wanted: Container[str] | None = None) -> tuple[set[str], bool]:
    """The paths with a finished score in a score file (those in ``wanted``, if given) and whether
    it has ``gt_score``. Reads rows one at a time, without a table: a resumed process of a large
    run reads every part beside the output."""
    path = Path(path)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        return set(), False
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read existing scores ({exc})") from None
    end = len(text) if text.endswith("\n") and text.count('"') % 2 == 0 else _last_record_end(text)
    rows = csv.reader(io.StringIO(text[:end], newline=""))
    header = next(rows, None)
    if header is None:
        return set(), False
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{path}: exists but is not a score file (missing column(s) {', '.join(missing)});"
            " choose another output path"
        )
    at = {c: header.index(c) for c in COLUMNS}
    numbers = [at[c] for c in ("score", *PROB_COLUMNS, "entropy")]
    done: set[str] = set()
    for row in rows:
        if len(row) != len(header) or row[at["error"]] != "":
            continue
        key = csv_unescape_value(row[at["path"]])
        if (wanted is None or key in wanted) and _all_finite(row[i] for i in numbers):
            done.add(key)
    return done, "gt_score" in header


def _all_finite(cells: Iterable[str]) -> bool:
    try:
        return all(math.isfinite(float(c)) for c in cells)
    except ValueError:  # a blank or non-numeric cell: not a finished score
        return False


# --------------------------------------------------------------------------- writing


def _read_text(path: Path) -> str:
    # newline="": a CR inside a quoted path is part of the path, not a line end to translate.
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _complete_records(text: str) -> list[list[str]]:
    """The CSV records of ``text`` without a torn last one.

    Each chunk is written as whole lines, so a kill mid-write leaves a final record without its
    newline. Cutting at the last newline is not enough: a quoted path may hold a newline, and a
    cut there leaves an open quote that would swallow the rest as one field. So the cut goes
    after the last newline outside quotes (a doubled quote inside a field toggles twice).
    """
    if text.endswith("\n") and text.count('"') % 2 == 0:
        end = len(text)  # the common case: every record complete
    else:
        end = _last_record_end(text)
    return list(csv.reader(io.StringIO(text[:end], newline="")))


def _last_record_end(text: str) -> int:
    """Offset just past the last newline that ends a record (outside quotes), 0 if none."""
    in_quotes = False
    end = 0
    for i, ch in enumerate(text):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "\n" and not in_quotes:
            end = i + 1
    return end


def _csv_text(df: pd.DataFrame, header: bool) -> str:
    safe = csv_safe(df)  # text cells only: a negative number stays a number
    text_cells = (v for c in ("path", "error") if c in safe.columns for v in safe[c])
    buf = io.StringIO()
    # repr-precision floats: a resumed or merged file holds exactly the computed numbers.
    safe.to_csv(buf, index=False, header=header, lineterminator=_line_end(text_cells))
    return buf.getvalue()


def write_results(df: pd.DataFrame, path: str | Path) -> None:
    """Write the whole table to a temporary file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(_csv_text(df, header=True))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class ResultAppender:
    """Appends chunks of rows to a score CSV, each chunk flushed and synced before returning."""

    def __init__(self, path: str | Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size > 0:
            # Rewrite once if the file's header differs or a torn line must go, so every
            # appended line matches the header above it.
            if _header(self.path) != self.columns or not _ends_cleanly(self.path):
                existing = read_results(self.path)
                write_results(existing.reindex(columns=self.columns), self.path)
        else:
            write_results(pd.DataFrame(columns=self.columns), self.path)

    def append(self, rows: pd.DataFrame | ScoredChunk) -> None:
        if isinstance(rows, ScoredChunk):
            # Frame counts first: a kill between the two writes then leaves a count for a row
            # that is rescored (and counted again), never a scored video without its count.
            append_frame_counts(frames_path(self.path), rows.frame_counts())
            text = rows.csv_text(self.columns)
        else:
            text = _csv_text(rows.reindex(columns=self.columns), header=False)
        _append_synced(self.path, text)


def _append_synced(path: Path, text: str) -> None:
    if not text:
        return
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------- frame counts of videos


def frames_path(journal: str | Path) -> Path:
    """The frame-count side file of a score file or part: ``scores.csv`` -> ``scores.csv.frames.csv``."""
    journal = Path(journal)
    return journal.with_name(journal.name + ".frames.csv")


def append_frame_counts(path: Path, counts: FrameCounts) -> None:
    if not counts:
        return
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=_line_end(counts))
    if not path.exists() or path.stat().st_size == 0:
        writer.writerow(FRAME_COLUMNS)
    elif not _ends_cleanly(path):
        write_frame_counts(path, read_frame_counts(path))
    for p, (decoded, sampled) in counts.items():
        writer.writerow([csv_safe_value(p), decoded, sampled])
    _append_synced(path, buf.getvalue())


def read_frame_counts(path: str | Path) -> FrameCounts:
    """A frame-count side file (later lines win; a torn last line is ignored); ``{}`` if absent."""
    try:
        text = _read_text(Path(path))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read frame counts ({exc})") from None
    rows = _complete_records(text)
    out: FrameCounts = {}
    for row in rows[1:]:
        if len(row) == len(FRAME_COLUMNS) and row[1].isdigit() and row[2].isdigit():
            out[csv_unescape_value(row[0])] = (int(row[1]), int(row[2]))
    return out


def write_frame_counts(path: Path, counts: FrameCounts) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=_line_end(counts))
    writer.writerow(FRAME_COLUMNS)
    for p, (decoded, sampled) in counts.items():
        writer.writerow([csv_safe_value(p), decoded, sampled])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def short_videos(counts: FrameCounts) -> FrameCounts:
    """The videos scored from fewer frames than their sampling asked for."""
    return {p: c for p, c in counts.items() if c[0] < c[1]}


def _header(path: Path) -> list[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return next(csv.reader(fh), [])


def _ends_cleanly(path: Path) -> bool:
    # A last byte "\n" is not enough: a record torn just after a newline inside a quoted path
    # ends with one too, and would leave an open quote for the next append to land in.
    data = path.read_bytes()
    return not data or (data.endswith(b"\n") and data.count(b'"') % 2 == 0)


# --------------------------------------------------------------------------- parts and merging


def part_path(out: str | Path, rank: int, world: int) -> Path:
    """Where process ``rank`` of ``world`` appends its rows while a multi-process run lasts."""
    out = Path(out)
    return out.with_name(f"{out.name}.part{rank:03d}-of-{world:03d}")


def existing_parts(out: str | Path) -> list[Path]:
    """Part files left next to ``out`` (by this run or a killed earlier one), in name order."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    # The exact form only: the side files of parts (".frames.csv") share the prefix.
    part = re.compile(re.escape(out.name) + r"\.part\d{3,}-of-\d{3,}")
    return sorted(p for p in out.parent.glob(f"{out.name}.part*-of-*") if part.fullmatch(p.name))


def shard(items: Sequence, rank: int, world: int) -> list:
    """Contiguous block ``rank`` of ``world`` nearly equal blocks (sizes differ by at most one,
    the first blocks take the extra), as ``accelerate``'s ``split_between_processes`` does."""
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"process index {rank} is not within a world of {world} process(es)")
    base, extra = divmod(len(items), world)
    start = rank * base + min(rank, extra)
    stop = start + base + (1 if rank < extra else 0)
    return list(items[start:stop])


def merge_results(sources: Iterable[pd.DataFrame], order: Sequence[str]) -> pd.DataFrame:
    """One row per path from several tables (earlier sources first).

    A finished score always beats an error row for the same path; otherwise the later row
    wins (a retry replaces an older error). Paths in ``order`` come first, in that order;
    rows for other paths (from earlier runs on other inputs) keep their first-seen order after.
    """
    frames = [normalise(s) for s in sources if s is not None and len(s)]
    with_gt = any("gt_score" in f.columns for f in frames)
    if not frames:
        return empty_results(with_gt)
    df = pd.concat([f.reindex(columns=output_columns(with_gt)) for f in frames], ignore_index=True)
    df["_seq"] = np.arange(len(df))
    df["_ok"] = is_done(df)
    first_seen = df.drop_duplicates("path", keep="first").set_index("path")["_seq"]
    best = df.sort_values(["_ok", "_seq"], kind="stable").drop_duplicates("path", keep="last")
    rank_in_order = pd.Series(np.arange(len(order)), index=pd.Index(order).drop_duplicates())
    key = best["path"].map(rank_in_order)
    # Paths not among the current inputs sort after them, by where they were first seen.
    key = key.fillna(len(order) + best["path"].map(first_seen))
    best = best.assign(_key=key.to_numpy()).sort_values("_key", kind="stable")
    return best.drop(columns=["_seq", "_ok", "_key"]).reset_index(drop=True)


# --------------------------------------------------------------------------- the output of a resumable run


@dataclass
class PreviousRows:
    """What an output file (and the part files of an interrupted run beside it) already holds."""

    done: set[str]  # paths with a finished score: a resumed run skips them
    with_gt: bool  # earlier rows carry ``gt_score``, so the column stays


class ResultFile:
    """The output CSV of a resumable scoring run.

    Each process appends its rows as they are computed: to the file itself when it runs alone,
    to its own part file beside it under several processes. At the end the main process merges
    the file and every part into the file, one row per path, and removes the parts.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"output {self.path} is a folder; give a CSV file path")

    def claim(self, provenance: Provenance, is_main: bool) -> None:
        """Check that the rows already there were made as this run makes them, and record how
        this run makes them when there are none.

        Every process checks and, for a new file, writes the same record (so none depends on
        another having done it first); the caller then waits for all of them before anyone
        appends, so they all judge the file as it was before this run.
        """
        has_rows = (self.path.is_file() and self.path.stat().st_size > 0) or bool(existing_parts(self.path))
        if not check_resumable(self.path, provenance, has_rows):
            write_record(self.path, provenance.to_json())
            if is_main:
                # Counts of an earlier file at this path (since deleted) would describe other rows.
                frames_path(self.path).unlink(missing_ok=True)

    def previous(self, wanted: Container[str] | None = None) -> PreviousRows:
        """The rows already there, from earlier or interrupted runs (errors are not done); with
        ``wanted``, only those paths are kept (a process of a large run needs its own only)."""
        done: set[str] = set()
        with_gt = False
        for journal in [self.path, *existing_parts(self.path)]:
            finished, has_gt = finished_paths(journal, wanted)
            done |= finished
            with_gt = with_gt or has_gt
        return PreviousRows(done, with_gt)

    def appender(self, rank: int, world: int, with_gt: bool) -> ResultAppender:
        """Where process ``rank`` of ``world`` appends its rows."""
        journal = self.path if world == 1 else part_path(self.path, rank, world)
        return ResultAppender(journal, output_columns(with_gt))

    def merge(self, order: Sequence[str], with_gt: bool, remove_parts: bool = True) -> pd.DataFrame:
        """Rewrite the file with one row per path from it and every part (the paths of ``order``
        first, in that order), remove the parts (unless ``remove_parts`` is false), and return
        the merged table. Called once every process has finished appending."""
        journals = [self.path, *existing_parts(self.path)]
        tables = [read_results(j) for j in journals]
        with_gt = with_gt or any("gt_score" in t.columns for t in tables)  # never drop a column of the rows
        merged = merge_results(tables, order)
        # How many parts hold a finished score of each path: more than one means a path scored
        # twice (the merge step reports it); the file itself may repeat a part it was merged from.
        in_parts = pd.concat([t.loc[is_done(t), "path"] for t in tables[1:] if len(t)] or [pd.Series(dtype=str)])
        merged.attrs["parts_scoring"] = in_parts.value_counts().to_dict()
        counts: FrameCounts = {}
        for journal in journals:
            counts.update(read_frame_counts(frames_path(journal)))
        done = merged.loc[is_done(merged), "path"] if len(merged) else []
        counts = {p: counts[p] for p in done if p in counts}
        if counts:
            write_frame_counts(frames_path(self.path), counts)
        else:
            frames_path(self.path).unlink(missing_ok=True)
        write_results(merged.reindex(columns=output_columns(with_gt)), self.path)
        if remove_parts:
            self.remove_parts(journals[1:])
        merged.attrs["frames"] = counts
        merged.attrs["parts"] = journals[1:]
        return merged

    def remove_parts(self, parts: Sequence[Path]) -> None:
        """Delete parts (and their frame counts) whose rows the file now holds."""
        for p in parts:
            frames_path(p).unlink(missing_ok=True)
            p.unlink(missing_ok=True)

    def frame_counts(self) -> FrameCounts:
        """(decoded, sampled) frames of each scored video in the file, as of the last merge."""
        return read_frame_counts(frames_path(self.path))
