"""Classification metrics computed from scores, shared by the leakage check, the baselines and
monitoring's quality check (TFMA computes the model's own evaluation)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Area under the ROC curve from ranks (Mann-Whitney U, ties counted half); None when one
    class is absent."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(scores, dtype="float64")).rank(method="average").to_numpy()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
