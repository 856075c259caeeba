"""Accuracy: the fraction of predictions that equal their reference class id."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy is the proportion of correct predictions among all predictions:
Accuracy = (TP + TN) / (TP + TN + FP + FN). This numpy version needs no scikit-learn.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    normalize (`bool`): If `False`, return the number of correct predictions instead of their fraction.
        Defaults to `True`.
    sample_weight (`list` of `float`): Sample weights. Defaults to `None` (all samples weigh 1).
Returns:
    accuracy (`float` or `int`): Between 0.0 and 1.0, or a count when `normalize=False`.
Examples:
    >>> accuracy = evaluate.load("hf_transfer/metrics/accuracy")
    >>> accuracy.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])
    {'accuracy': 0.5}
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
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        correct = np.asarray(predictions) == np.asarray(references)
        if sample_weight is None:
            return {"accuracy": float(correct.mean()) if normalize else int(correct.sum())}
        weights = np.asarray(sample_weight, dtype=float)
        total = float(np.dot(correct, weights))
        return {"accuracy": total / weights.sum() if normalize else total}
