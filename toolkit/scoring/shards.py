"""The merge step of a sharded run: the parts of its processes joined into one score file.

Each process of a run started with ``merge=False`` (``--no-merge``) writes its part
``<out>.partRRR-of-WWW`` and exits without waiting for the others. Once all have finished,
:func:`merge_scores` (``qalign score --merge-only`` with the run's command line) joins ``<out>`` and
every part into ``<out>``, in input order, one row per input, and says which inputs have no row
(a process that died, or has not run yet) and which were scored in more than one part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from toolkit.errors import InputError
from toolkit.scoring.inputs import plan_inputs
from toolkit.scoring.provenance import check_merge
from toolkit.scoring.results import ResultFile, existing_parts, is_done


@dataclass
class MergeReport:
    """What a merge found: the inputs, and how many of them ended up scored, failed or absent."""

    out: Path
    inputs: int  # inputs the command names (each shard's samples counted)
    parts: list[Path]  # the parts joined
    scored: int  # inputs with a finished score
    failed: int  # inputs whose row is an error
    missing: list[str]  # inputs without any row
    duplicated: list[str]  # inputs scored in more than one part (one row kept)
    others: int  # rows for paths the command does not name (kept after the inputs)
    parts_removed: bool  # the parts are gone: nothing was missing
    table: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)  # the merged file

    @property
    def complete(self) -> bool:
        return not self.missing


def merge_scores(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
    task: str = "quality",
    video: bool = False,
    image_column: str = "image",
    id_column: str | None = None,
    video_as_frames: bool | None = None,
) -> MergeReport:
    """Join ``out`` and the parts beside it into ``out``; ``inputs`` and the columns as the run had.

    The record beside ``out`` must exist and, with ``model``, name the same model, adapter, task
    and input kind (with ``video_as_frames``, also how videos were given). The parts are removed
    only when every input has a row, so a merge made while some process is missing can be made
    again once it has run; rows are chosen as a resumed run chooses them (a score beats an error,
    a later row an earlier one).
    """
    output = ResultFile(out)
    if not existing_parts(output.path) and not output.path.is_file():
        raise InputError(f"{output.path}: nothing to merge (neither the file nor parts beside it exist)")
    check_merge(output.path, model, adapter, task, video, video_as_frames)
    order = plan_inputs(inputs, video, image_column, id_column).keys()
    table = output.merge(order, with_gt=False, remove_parts=False)  # gt_score stays where a part has it
    parts: list[Path] = table.attrs["parts"]
    # Scored in several parts: a process that was given another share (inputs changed between
    # runs) or two processes started with one rank. The rows agree; the report says so.
    scoring = table.attrs["parts_scoring"]
    duplicated = [k for k in order if scoring.get(k, 0) > 1]
    expected = set(order)
    present = set(table["path"])
    missing = [k for k in order if k not in present]
    if not missing:
        output.remove_parts(parts)  # only those merged: a part that appeared since stays
    ours = table[table["path"].isin(expected)]
    ok = is_done(ours)
    return MergeReport(
        out=output.path,
        inputs=len(order),
        parts=parts,
        scored=int(ok.sum()),
        failed=int((~ok).sum()),
        missing=missing,
        duplicated=duplicated,
        others=len(table) - len(ours),
        parts_removed=not missing,
        table=table,
    )
