"""Single-label classification scores computed by scikit-learn: accuracy, and precision, recall and F1 per class or
averaged, from one pass over the predictions."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

_DESCRIPTION = """
Accuracy is the fraction of predictions equal to their reference. Precision = TP / (TP + FP), recall = TP / (TP + FN)
and F1 = 2 * TP / (2 * TP + FP + FN), per class or averaged over classes. All four are computed by scikit-learn
(`accuracy_score` and `precision_recall_fscore_support`), so the numbers are scikit-learn's.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    labels (`list` of `int`): The class ids to score, in this order. Classes that appear in neither predictions nor
        references still count (with a score of `zero_division`). Defaults to the sorted ids that do appear.
    average (`str` or `None`): `"macro"` (mean over classes, default), `"micro"`, `"weighted"`, or `None` (one score
        per class, in `labels` order).
    zero_division (`float`): The score of a 0 / 0 case: `0.0` (default), `1.0`, or `nan` (left out of the averages).
Returns:
    accuracy (`float`), precision, recall, f1 (`float`, or an array of one score per label when `average=None`).
Examples:
    >>> metric = evaluate.load("hf_transfer/core/metric_modules/classification")
    >>> metric.compute(references=[0, 1, 2, 0], predictions=[0, 2, 1, 0], average=None)["f1"]
    array([1., 0., 0.])
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


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
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
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, labels=labels, average=average, zero_division=zero_division
        )
        scores = {"precision": precision, "recall": recall, "f1": f1}
        if average is not None:
            scores = {name: float(value) for name, value in scores.items()}
        return {"accuracy": float(accuracy_score(references, predictions)), **scores}
