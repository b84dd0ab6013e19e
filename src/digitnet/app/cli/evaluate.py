"""``digitnet evaluate``: accuracy, per-class precision and recall, and the confusion matrix."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ...files.modelfile import class_names, input_scale
from .common import add_command, load_model, percent

EXAMPLES = """\
  digitnet evaluate digitnet-best.npz                 on the data set it was trained on (MNIST's test set)
  digitnet evaluate model.npz --data fashion-mnist    on another data set's test set
  digitnet evaluate model.npz --data my-digits.csv    on every row of a labelled CSV file
"""

DESCRIPTION = """\
Evaluate a saved model on a test set: overall accuracy, precision and recall
for every class, and the confusion matrix (rows: true class, columns:
predicted class). Pixels are scaled as the model was trained (its header).
A data set with a test part (MNIST, a folder of IDX files) is evaluated on
that part; a CSV file on all of its rows.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "evaluate", help="accuracy, precision/recall, confusion matrix",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", metavar="MODEL", help="a model file written by 'digitnet train'")
    p.add_argument("--data", metavar="SOURCE",
                   help="mnist, fashion-mnist, kmnist, a folder of IDX files or a labelled .csv "
                        "(default: the data set named in the model)")
    return p


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def format_report(matrix: np.ndarray, names: list[str]) -> str:
    """Per-class precision/recall/F1 and the confusion matrix as text tables."""
    true_totals = matrix.sum(axis=1)
    predicted_totals = matrix.sum(axis=0)
    hits = np.diag(matrix)
    width = max(5, *(len(n) for n in names))
    lines = [f"{'class':>{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}"]
    for k, name in enumerate(names):
        precision = hits[k] / predicted_totals[k] if predicted_totals[k] else None
        recall = hits[k] / true_totals[k] if true_totals[k] else None
        f1 = (2 * precision * recall / (precision + recall)
              if precision is not None and recall is not None and precision + recall else None)
        lines.append(f"{name:>{width}}  {percent(precision):>9}  {percent(recall):>7}  "
                     f"{percent(f1):>7}  {int(true_totals[k]):>7,}")
    lines.append("")
    lines.append("confusion matrix (rows: true class, columns: predicted class)")
    cell = max(len(f"{int(matrix.max()):,}"), *(len(n) for n in names), 3)
    lines.append(f"{'':>{width}} " + " ".join(f"{n:>{cell}}" for n in names))
    for k, name in enumerate(names):
        lines.append(f"{name:>{width}} " + " ".join(f"{int(v):>{cell},}" for v in matrix[k]))
    return "\n".join(lines)


def run(args) -> int:
    from ...train.recipes import load_data

    network = load_model(args.model)
    preprocessing = network.metadata.get("preprocessing") or {}
    recipe = network.metadata.get("recipe") or {}
    # The recipe keeps the source as given (a path for folders and CSV files);
    # the preprocessing keeps only the data set's name.
    source = args.data or recipe.get("data") or preprocessing.get("dataset") or "mnist"
    dataset = load_data(source, scale=input_scale(network))
    if dataset.X_test is not None:
        X, y, part = dataset.X_test, dataset.y_test, "test set"
    else:
        X, y, part = dataset.X_train, dataset.y_train, "all rows"
    if X.shape[1] != network.sizes[0]:
        raise DataError(f"{source} has {X.shape[1]} values per sample but the model takes "
                        f"{network.sizes[0]} inputs: it was trained on other data")
    names = class_names(network)
    if int(y.max()) >= len(names):
        raise DataError(f"{source} has labels up to {int(y.max())} but the model has only "
                        f"{len(names)} classes")
    predicted = network.predict(X)
    accuracy = float(np.mean(predicted == y))
    print(f"model: {args.model}")
    print(f"data: {source} ({part}, {len(y):,} samples)")
    print(f"accuracy: {percent(accuracy)} ({int(np.sum(predicted == y)):,} of {len(y):,} right)")
    print()
    print(format_report(confusion_matrix(y, predicted, len(names)), names))
    return 0
