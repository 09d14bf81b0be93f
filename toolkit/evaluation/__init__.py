"""How well predicted scores agree with human ratings.

:mod:`~toolkit.evaluation.metrics` computes SRCC, KRCC, PLCC and RMSE (raw and after the
4-parameter logistic) with bootstrap intervals, paired comparisons and Fisher-z tests;
:mod:`~toolkit.evaluation.report` writes a Markdown/JSON/PNG report folder;
:mod:`~toolkit.evaluation.inputs` reads score files and ground truth and lines them up.
"""

from toolkit.evaluation.inputs import AlignedScores, ScoreSet, align, load_evaluation_inputs, read_ground_truth, read_scores
from toolkit.evaluation.metrics import (
    METRIC_NAMES,
    AgreementReport,
    LogisticFit,
    MetricResult,
    PairedDifference,
    agreement,
    fisher_z_ci,
    fisher_z_test,
    fit_logistic,
    krcc,
    logistic4,
    paired_bootstrap,
    plcc,
    rmse,
    srcc,
)
from toolkit.evaluation.report import Comparison, EvaluationReport, evaluate_sets, write_report

__all__ = [
    "METRIC_NAMES",
    "AgreementReport",
    "AlignedScores",
    "Comparison",
    "EvaluationReport",
    "LogisticFit",
    "MetricResult",
    "PairedDifference",
    "ScoreSet",
    "agreement",
    "align",
    "evaluate_sets",
    "fisher_z_ci",
    "fisher_z_test",
    "fit_logistic",
    "krcc",
    "load_evaluation_inputs",
    "logistic4",
    "paired_bootstrap",
    "plcc",
    "read_ground_truth",
    "read_scores",
    "rmse",
    "srcc",
    "write_report",
]
