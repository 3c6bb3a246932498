"""Robustness and out-of-distribution toolkit (notebook 05): what a compressed model loses beyond accuracy.

- :mod:`.corruptions`: the MNIST-C style suite on pixels in [0, 1] (``corrupt``, ``CORRUPTIONS``, severities 0..5),
  built from :mod:`.pixel_ops`, :mod:`.geometry` and :mod:`.overlays`;
- :mod:`.corrupted_data`: corrupted copies of a test set, standardized and cached (``corrupted_test_set``);
- :mod:`.ood_data` / :mod:`.letters`: near-OOD, far-OOD and covariate-shift sets (``ood_set``);
- :mod:`.detectors`, :mod:`.ood_metrics`, :mod:`.ood_eval`: OOD scores (higher = more in-distribution), AUROC /
  AUPR / FPR@95 with the convention stated, and a one-call table;
- :mod:`.calibration`: ECE and reliability diagrams; :mod:`.exemplars`: compression-identified exemplars;
- :mod:`.corruption_metrics`: accuracy per corruption, mCA, (relative) mCE; :mod:`.plots`: the figures.
"""

from .calibration import ReliabilityData, expected_calibration_error, reliability_data
from .corrupted_data import build_corrupted_sets, clean_test_set, corrupted_loader, corrupted_test_set
from .corruption_metrics import corruption_accuracy, corruption_errors, mean_corruption_accuracy, summarize_corruptions
from .corruptions import (
    CORRUPTIONS,
    FAMILIES,
    MAX_SEVERITY,
    MNISTC_SEVERITY,
    SEVERITIES,
    corrupt,
    corrupt_standardized,
    corruption_ladder,
    corruption_params,
)
from .detectors import (
    DETECTORS,
    FEATURE_DETECTORS,
    LOGIT_DETECTORS,
    FittedDetector,
    fit_detector,
    mahalanobis_score,
    score,
)
from .exemplars import Exemplars, compression_identified_exemplars, modal_labels
from .ood_data import OOD_SETS, OODSet, ood_set
from .ood_eval import detector_scores, evaluate_ood
from .ood_metrics import detection_metrics, fpr_at_tpr

__all__ = [
    "CORRUPTIONS", "DETECTORS", "FAMILIES", "FEATURE_DETECTORS", "LOGIT_DETECTORS", "MAX_SEVERITY", "MNISTC_SEVERITY",
    "OOD_SETS", "SEVERITIES", "Exemplars", "FittedDetector", "OODSet", "ReliabilityData", "build_corrupted_sets",
    "clean_test_set", "compression_identified_exemplars", "corrupt", "corrupt_standardized", "corrupted_loader",
    "corrupted_test_set", "corruption_accuracy", "corruption_errors", "corruption_ladder", "corruption_params",
    "detector_scores", "evaluate_ood", "expected_calibration_error", "fit_detector", "fpr_at_tpr",
    "mahalanobis_score", "mean_corruption_accuracy", "modal_labels", "detection_metrics", "ood_set",
    "reliability_data", "score", "summarize_corruptions",
]
