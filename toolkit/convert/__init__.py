"""Rating tables -> Q-Align training data.

Read a MOS table, a vote histogram table or a long vote table (:func:`load_labels`) into one
normalised :class:`LabelTable`, drop byte-identical media, split by content group, and write
Q-Align conversation JSON (:func:`conversation_records`), a Hugging Face dataset or Parquet
(:mod:`toolkit.convert.hf`). :func:`convert` does all of it, as ``qalign convert`` does.
"""

from toolkit.convert.conversation import conversation_records, dumps_conversations, write_conversations
from toolkit.convert.labels import (
    PROB_COLUMNS,
    LabelTable,
    labels_from_counts,
    labels_from_mos,
    labels_from_votes,
)
from toolkit.convert.pipeline import ConvertResult, convert, write_training_data
from toolkit.convert.prompts import IQA_QUESTIONS, draw_questions, question_pool
from toolkit.convert.readers import ColumnMap, detect_kind, load_labels, read_rating_table
from toolkit.convert.splits import assign_splits, drop_duplicates, parse_fractions, split_table
from toolkit.qalign import answer_text

__all__ = [
    "PROB_COLUMNS",
    "ColumnMap",
    "ConvertResult",
    "IQA_QUESTIONS",
    "LabelTable",
    "answer_text",
    "assign_splits",
    "conversation_records",
    "convert",
    "detect_kind",
    "draw_questions",
    "drop_duplicates",
    "dumps_conversations",
    "labels_from_counts",
    "labels_from_mos",
    "labels_from_votes",
    "load_labels",
    "parse_fractions",
    "question_pool",
    "read_rating_table",
    "split_table",
    "write_conversations",
    "write_training_data",
]
