"""Multi-label classification scores computed by scikit-learn: F1 (micro, macro, per label) and subset accuracy, on
multi-hot 0/1 rows."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score

_DESCRIPTION = """
Scores for multi-label classification, where each sample has any number of labels, given as multi-hot 0/1 rows.
Micro F1 pools the true positives, false positives and false negatives of all labels; macro F1 is the mean of the
per-label F1 scores; subset accuracy is the fraction of samples whose whole row of labels is exactly right. All are
computed by scikit-learn (`f1_score`, `accuracy_score` on indicator arrays).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): Predicted multi-hot rows, shape (samples, labels), values 0 or 1.
    references (`list` of `list` of `int`): True multi-hot rows, the same shape.
    zero_division (`float`): The F1 score of a label that is neither predicted nor true: `0.0` (default), `1.0`, or
        `nan` (then left out of the macro average).
Returns:
    f1_micro (`float`), f1_macro (`float`), subset_accuracy (`float`),
    f1_per_label (`numpy.ndarray`): one F1 score per label column.
Examples:
    >>> multilabel = evaluate.load("hf_transfer/core/metric_modules/multilabel")
    >>> multilabel.compute(references=[[1, 0, 1], [0, 1, 0]], predictions=[[1, 0, 0], [0, 1, 0]])["f1_micro"]
    0.8
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


def _as_multi_hot(name, rows):
    array = np.asarray(rows)
    if array.ndim != 2 or not np.isin(array, (0, 1)).all():
        raise ValueError(
            f"{name} must be multi-hot rows of 0 and 1, shape (samples, labels); got shape {array.shape}."
        )
    return array.astype(int)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Multilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references, zero_division=0.0):
        predictions, references = _as_multi_hot("predictions", predictions), _as_multi_hot("references", references)
        if predictions.shape != references.shape:
            raise ValueError(f"predictions have shape {predictions.shape} but references {references.shape}.")
        if predictions.shape[1] == 1:  # one label: scikit-learn reads a one-column indicator array as a binary target,
            # and scores two classes (absent, present): two per-label scores for one label, a macro F1 of both.
            per_label = f1_score(
                references[:, 0], predictions[:, 0], average=None, labels=[1], zero_division=zero_division
            )
            scores = {"f1_micro": float(per_label[0]), "f1_macro": float(per_label[0])}
        else:
            scores = {
                f"f1_{average}": float(f1_score(references, predictions, average=average, zero_division=zero_division))
                for average in ("micro", "macro")
            }
            per_label = f1_score(references, predictions, average=None, zero_division=zero_division)
        scores["subset_accuracy"] = float(accuracy_score(references, predictions))
        scores["f1_per_label"] = per_label
        return scores
