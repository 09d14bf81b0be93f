"""Q-Align scoring over any backbone: inputs, batching, videos, resumable and sharded output.

>>> from toolkit.scoring import score_images            # doctest: +SKIP
>>> df = score_images(["photos/"], model="tiny")         # doctest: +SKIP
>>> df[["path", "score", "p_excellent", "entropy"]]      # doctest: +SKIP
"""

from toolkit.qalign import check_task
from toolkit.qalign import level_softmax as level_probabilities  # this package's name for the close-set softmax
from toolkit.scoring.engine import Scorer, auto_num_workers, score_images
from toolkit.scoring.inputs import ScoreInput, collect_inputs, read_manifest
from toolkit.scoring.results import COLUMNS, PROB_COLUMNS, merge_results, read_results, shard

__all__ = [
    "COLUMNS",
    "PROB_COLUMNS",
    "ScoreInput",
    "Scorer",
    "auto_num_workers",
    "check_task",
    "collect_inputs",
    "level_probabilities",
    "merge_results",
    "read_manifest",
    "read_results",
    "score_images",
    "shard",
]
