"""F1 score per class and its macro, micro and weighted averages, for single-label classification."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall: F1 = 2 * TP / (2 * TP + FP + FN).
This numpy version gives the same numbers as `sklearn.metrics.f1_score` for single-label data.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    labels (`list` of `int`): The class ids to score, in this order. Classes that appear in neither predictions nor
        references still count (with a score of `zero_division`). Defaults to the sorted ids that do appear.
    average (`str` or `None`): `"macro"` (mean over classes, default), `"micro"` (from the summed counts),
        `"weighted"` (mean weighted by each class's number of true samples), or `None` (one score per class).
    zero_division (`float` or `"warn"`): The score of a class that is neither predicted nor true: `0.0` (default,
        and what `"warn"` means), `1.0`, or `nan` (then left out of the averages).
Returns:
    f1 (`float`, or `numpy.ndarray` of one score per label when `average=None`).
Examples:
    >>> f1 = evaluate.load("hf_transfer/metrics/f1")
    >>> f1.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 2, 1, 0, 0, 1], average=None)
    {'f1': array([0.8, 0. , 0. ])}
"""

_CITATION = """
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_AVERAGES = ("macro", "micro", "weighted", None)


def _class_counts(predictions, references, labels=None):
    """True positives, predicted count and true count of each label, as integer arrays in `labels` order."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    labels = np.union1d(predictions, references) if labels is None else np.asarray(labels)
    is_pred = predictions[:, None] == labels[None, :]
    is_true = references[:, None] == labels[None, :]
    return (is_pred & is_true).sum(0), is_pred.sum(0), is_true.sum(0)


def _divide_and_average(numerator, denominator, support, average, zero_division):
    """Per-class ratios, averaged the way scikit-learn does; `zero_division` fills the 0 / 0 cases."""
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}.")
    zero_division = 0.0 if zero_division == "warn" else float(zero_division)
    if average == "micro":
        numerator, denominator = numerator.sum(keepdims=True), denominator.sum(keepdims=True)
    scores = np.full(len(numerator), zero_division)
    np.divide(numerator, denominator, out=scores, where=denominator > 0)
    if average is None:
        return scores
    keep = ~np.isnan(scores)
    if not keep.any():
        return float("nan")
    # Weighted averaging falls back to a plain mean when no label has support, as in scikit-learn.
    weights = support[keep] if average == "weighted" and support[keep].sum() > 0 else None
    return float(np.average(scores[keep], weights=weights))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, labels=None, average="macro", zero_division=0.0):
        tp, predicted, true = _class_counts(predictions, references, labels)
        return {"f1": _divide_and_average(2 * tp, predicted + true, true, average, zero_division)}
