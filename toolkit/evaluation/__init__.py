"""How well predicted scores agree with human ratings.

:mod:`~toolkit.evaluation.metrics` computes SRCC, KRCC, PLCC and RMSE (raw and after the
4-parameter logistic) with bootstrap intervals, paired comparisons and Fisher-z tests;
:mod:`~toolkit.evaluation.report` writes a Markdown/JSON/PNG report folder;
:mod:`~toolkit.evaluation.inputs` reads score files and ground truth and lines them up;
:func:`~toolkit.evaluation.model_comparison.evaluate_models` scores test sets with several models (and
adapters) and writes one report with a section per test set, including the calibration of the
predicted level distributions (:mod:`~toolkit.evaluation.calibration`) and the raters' noise
ceiling (:mod:`~toolkit.evaluation.testsets`).
"""

from toolkit.evaluation.calibration import CalibrationResult, calibration, kl_divergence
from toolkit.evaluation.inputs import (
    AlignedScores,
    ScoreSet,
    align,
    load_evaluation_inputs,
    match_paths,
    read_ground_truth,
    read_scores,
)
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
from toolkit.evaluation.model_comparison import (
    ModelSpec,
    ModelsReport,
    TestSetResult,
    evaluate_models,
    evaluate_test_set,
    model_specs,
    score_test_sets,
)
from toolkit.evaluation.report import Comparison, EvaluationReport, evaluate_sets, write_report
from toolkit.evaluation.testsets import TestSet, TestVotes, load_test_set, match_votes

__all__ = [
    "METRIC_NAMES",
    "AgreementReport",
    "AlignedScores",
    "CalibrationResult",
    "Comparison",
    "EvaluationReport",
    "LogisticFit",
    "MetricResult",
    "ModelSpec",
    "ModelsReport",
    "PairedDifference",
    "ScoreSet",
    "TestSet",
    "TestSetResult",
    "TestVotes",
    "agreement",
    "align",
    "calibration",
    "evaluate_models",
    "evaluate_sets",
    "evaluate_test_set",
    "fisher_z_ci",
    "fisher_z_test",
    "fit_logistic",
    "kl_divergence",
    "krcc",
    "load_evaluation_inputs",
    "load_test_set",
    "logistic4",
    "match_paths",
    "match_votes",
    "model_specs",
    "paired_bootstrap",
    "plcc",
    "read_ground_truth",
    "read_scores",
    "rmse",
    "score_test_sets",
    "srcc",
    "write_report",
]
