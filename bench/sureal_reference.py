"""Run Netflix sureal 0.9.0 on a long vote CSV and write its results as JSON.

sureal is not a dependency of the toolkit; run this with a Python that has it, e.g.::

    python -m venv /tmp/sureal-venv && /tmp/sureal-venv/bin/pip install sureal==0.9.0
    /tmp/sureal-venv/bin/python bench/sureal_reference.py votes.csv out.json [MLE,MLE_CO,...]

The CSV has columns ``item, rater, vote`` and optionally ``content``. Items keep their order of
first appearance; contents are numbered in sorted order (sureal's ``content_id``). The JSON holds
``subjects`` (sureal's sorted observer list), ``items``, per model the sureal outputs as lists in
those orders, and ``seconds`` per model (``run_modeling`` only, data loading excluded).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time

import numpy as np
import pandas as pd
from sureal.dataset_reader import RawDatasetReader
from sureal.subjective_model import (
    BiasremvSubjrejMosModel,
    MaximumLikelihoodEstimationModel,
    MaximumLikelihoodEstimationModelContentOblivious,
    MosModel,
    SubjrejMosModel,
)
from sureal.tools.misc import empty_object

MODELS = {
    "MOS": MosModel,
    "MLE": MaximumLikelihoodEstimationModel,
    "MLE_CO": MaximumLikelihoodEstimationModelContentOblivious,
    "BT500_SR_MOS": SubjrejMosModel,
    "P913_BR_SR_MOS": BiasremvSubjrejMosModel,
}
KEYS = (
    "quality_scores",
    "quality_scores_std",
    "observer_bias",
    "observer_bias_std",
    "observer_inconsistency",
    "observer_inconsistency_ci95",
    "content_ambiguity",
    "observer_rejected",
    "num_iter",
)


def build_dataset(frame: pd.DataFrame) -> tuple[object, list[str]]:
    items = list(dict.fromkeys(frame["item"]))
    if "content" in frame.columns:
        content_id = {c: i for i, c in enumerate(sorted(frame["content"].unique()))}
        item_content = frame.drop_duplicates("item").set_index("item")["content"].map(content_id)
    else:
        content_id = {it: i for i, it in enumerate(items)}
        item_content = pd.Series(content_id)
    dataset = empty_object()
    dataset.ref_videos = [{"content_id": i, "content_name": str(c), "path": f"ref_{i}"} for c, i in content_id.items()]
    dataset.dis_videos = []
    groups = frame.groupby("item", sort=False)
    for k, item in enumerate(items):
        rows = groups.get_group(item)
        dataset.dis_videos.append(
            {
                "asset_id": k,
                "content_id": int(item_content[item]),
                "path": str(item),
                "os": {str(r): float(v) for r, v in zip(rows["rater"], rows["vote"])},
            }
        )
    return dataset, [str(i) for i in items]


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    which = sys.argv[3].split(",") if len(sys.argv) > 3 else list(MODELS)
    dataset, items = build_dataset(pd.read_csv(source))
    reader = RawDatasetReader(dataset)
    out: dict = {"subjects": reader._get_list_observers(), "items": items, "seconds": {}}
    for name in which:
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # sureal prints every iteration
            result = MODELS[name](reader).run_modeling()
        out["seconds"][name] = time.perf_counter() - start
        out[name] = {
            k: (np.asarray(result[k]).tolist() if k != "num_iter" else int(result[k])) for k in KEYS if k in result
        }
    with open(target, "w") as handle:
        json.dump(out, handle)


if __name__ == "__main__":
    main()
