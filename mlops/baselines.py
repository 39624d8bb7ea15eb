"""Non-ML and simple-ML baselines the model must beat, scored on the same test split with the same
metrics: the majority class, a linear model (multinomial logistic regression) on the same raw
features, and rules from config such as `payment_type == 'Credit Card'`."""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.config import FeatureConfig, RuleConfig
from mlops.features import category_text
from mlops.metrics import binary_auc

_TOP_CATEGORIES = 30


def classification_metrics(probabilities: np.ndarray, label_ids: np.ndarray) -> dict[str, float]:
    """accuracy, and AUC: the positive class for binary tasks, the macro one-vs-rest average
    otherwise (as the evaluation reports them). A metric that is undefined is left out."""
    probabilities = np.asarray(probabilities, dtype="float64")
    label_ids = np.asarray(label_ids)
    num_classes = probabilities.shape[1]
    metrics = {"accuracy": float(np.mean(probabilities.argmax(axis=1) == label_ids))}
    positives = [1] if num_classes == 2 else range(num_classes)
    aucs = [binary_auc(probabilities[:, c], label_ids == c) for c in positives]
    aucs = [a for a in aucs if a is not None]
    if aucs:
        metrics["auc"] = float(np.mean(aucs))
    return metrics


@dataclass(frozen=True)
class Baseline:
    name: str
    kind: str  # majority | linear | rule
    model: Any

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model(frame)


def majority_class(label_ids: np.ndarray, num_classes: int) -> Baseline:
    prior = np.bincount(label_ids, minlength=num_classes) / max(len(label_ids), 1)
    winner = np.eye(num_classes)[int(np.argmax(prior))]
    # The prior as scores would give AUC 0.5 too; the one-hot keeps accuracy exact.
    return Baseline("majority class", "majority", lambda f: np.tile(winner, (len(f), 1)))


class _Design:
    """Raw features as a numeric design matrix: z-scored numbers (missing -> 0 plus an indicator),
    one-hot of the most frequent categories (the rest share one column)."""

    def __init__(self, frame: pd.DataFrame, features: FeatureConfig) -> None:
        self.features = features
        self.stats: dict[str, tuple[float, float]] = {}
        for name in features.numeric:
            values = pd.to_numeric(frame[name], errors="coerce").astype("float64")
            std = float(values.std()) if values.notna().sum() > 1 else 1.0
            self.stats[name] = (float(values.mean()) if values.notna().any() else 0.0, std or 1.0)
        self.vocab = {
            name: list(frame[name].map(category_text).value_counts().index[:_TOP_CATEGORIES])
            for name in features.categorical
        }
        if features.image is not None:  # images: z-scored pixels (mlops/images.py)
            pixels = self._pixels(frame)
            self.pixel_stats = (pixels.mean(axis=0), pixels.std(axis=0) + 1e-6)

    def _pixels(self, frame: pd.DataFrame) -> np.ndarray:
        from mlops.images import pixel_matrix

        image = self.features.image
        return pixel_matrix(frame[image.column], image)

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        columns = [np.ones(len(frame))]
        if self.features.image is not None:
            mean, std = self.pixel_stats
            columns += list(((self._pixels(frame) - mean) / std).T)
        for name, (mean, std) in self.stats.items():
            values = pd.to_numeric(frame[name], errors="coerce").astype("float64").to_numpy()
            missing = np.isnan(values)
            columns += [np.where(missing, 0.0, (values - mean) / std), missing.astype(float)]
        for name, vocab in self.vocab.items():
            text = frame[name].map(category_text).to_numpy()
            columns += [(text == value).astype(float) for value in vocab]
            columns.append((~np.isin(text, vocab)).astype(float))
        return np.column_stack(columns)


def linear_model(
    frame: pd.DataFrame, label_ids: np.ndarray, num_classes: int, features: FeatureConfig
) -> Baseline:
    """Multinomial logistic regression with L2, fitted by full-batch gradient descent (a few
    hundred steps on a standardised design converge for these sizes)."""
    design = _Design(frame, features)
    x = design(frame)
    y = np.eye(num_classes)[label_ids]
    weights = np.zeros((x.shape[1], num_classes))
    l2, rate = 1e-3, 0.5
    for _ in range(400):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        gradient = x.T @ (p - y) / len(x) + l2 * weights
        weights -= rate * gradient

    def predict(f: pd.DataFrame) -> np.ndarray:
        logits = design(f) @ weights
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    return Baseline("linear model", "linear", predict)


_COMPARISONS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
}


class RuleError(ValueError):
    """A rule that is not `<feature> <comparison> <literal>` joined by and/or."""


_REVERSED = {ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Lt: ast.Gt, ast.LtE: ast.GtE}
_QUOTED = re.compile(r"`([^`]*)`")


def _unquote_names(text: str) -> tuple[str, dict[str, str]]:
    """The rule with each backtick-quoted column name (`` `trip miles` ``, as pandas' query
    writes names that are not identifiers) replaced by a placeholder identifier, and the names
    the placeholders stand for."""
    names: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        if not match.group(1):
            raise RuleError(f"rule {text!r} quotes an empty column name (``)")
        key = f"_column_{len(names)}_"
        names[key] = match.group(1)
        return key

    unquoted = _QUOTED.sub(placeholder, text)
    if "`" in unquoted:
        raise RuleError(f"rule {text!r} has an unclosed backtick: quote names as `like this`")
    return unquoted, names


def parse_rule(text: str, columns: set[str] | None) -> Any:
    """A rule as a function frame -> boolean array. Only comparisons of a column with a literal
    (either side; a column whose name is not an identifier in backticks, `` `trip miles` > 2 ``),
    joined by `and` / `or` (and `not`), are allowed: nothing is evaluated as code. With
    `columns` None only the rule's shape is checked (at config load, before the data is read)."""
    unquoted, quoted = _unquote_names(text)
    try:
        tree = ast.parse(unquoted, mode="eval").body
    except SyntaxError as exc:
        raise RuleError(f"rule {text!r} is not an expression: {exc.msg}") from exc

    def comparison(node: ast.Compare) -> tuple[str, type, Any] | None:
        """(column, comparison, literal) of `column <op> literal` or `literal <op> column`."""
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARISONS:
            return None
        left, right, op = node.left, node.comparators[0], type(node.ops[0])
        if isinstance(left, ast.Name) and isinstance(right, ast.Constant):
            return left.id, op, right.value
        if isinstance(left, ast.Constant) and isinstance(right, ast.Name):
            return right.id, _REVERSED.get(op, op), left.value
        return None

    def build(node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [build(v) for v in node.values]
            join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            return lambda f: join.reduce([p(f) for p in parts])
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = build(node.operand)
            return lambda f: ~inner(f)
        found = comparison(node) if isinstance(node, ast.Compare) else None
        if found is not None and isinstance(found[2], (str, int, float)):
            name, op, value = found
            column = quoted.get(name, name)
            if columns is not None and column not in columns:
                raise RuleError(f"rule {text!r} names {column!r}, which is not a column")
            compare = _COMPARISONS[op]
            if isinstance(value, str):
                return lambda f: compare(f[column].map(category_text).to_numpy(), value)
            return lambda f: np.nan_to_num(
                compare(pd.to_numeric(f[column], errors="coerce").to_numpy(dtype=float), value)
            ).astype(bool)
        raise RuleError(
            f"rule {text!r}: only `column <op> literal` comparisons joined by and/or/not are "
            "allowed, e.g. payment_type == 'Credit Card' and fare > 10 (a column name with "
            "spaces goes in backticks: `trip miles` > 2)"
        )

    return build(tree)


def rule_baseline(rule: RuleConfig, classes: list[str], columns: set[str]) -> Baseline:
    """Predict `rule.predict` where the rule holds and `rule.otherwise` elsewhere."""
    matches = parse_rule(rule.when, columns)
    for value in (rule.predict, rule.otherwise):
        if value not in classes:
            raise RuleError(f"rule {rule.name!r} predicts {value!r}, not a class ({classes})")
    hit, miss = classes.index(rule.predict), classes.index(rule.otherwise)
    eye = np.eye(len(classes))
    return Baseline(
        f"rule: {rule.name}",
        "rule",
        lambda f: np.where(matches(f)[:, None], eye[hit], eye[miss]),
    )


def fit_baselines(
    train: pd.DataFrame,
    label_ids: np.ndarray,
    classes: list[str],
    features: FeatureConfig,
    rules: list[RuleConfig],
) -> list[Baseline]:
    baselines = [majority_class(label_ids, len(classes))]
    baselines.append(linear_model(train, label_ids, len(classes), features))
    baselines += [rule_baseline(rule, classes, set(train.columns)) for rule in rules]
    return baselines
