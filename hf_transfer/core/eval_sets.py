"""Evaluating one classifier on several labelled sets (an in-domain validation set and shifted ones): reading each set
with the model's label names and scoring it. Used by `evaluate` and by the α sweep of `merge`. Every set is read and
its labels matched to the model's before any weights are loaded, so a bad file stops the command early."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from hf_transfer.core.arguments import DataArguments, EvalDataArguments, EvalSet
from hf_transfer.core.cleaning import label_name_keys, listed, normalise_scalar
from hf_transfer.core.data import load_data
from hf_transfer.core.inference import predict_logits
from hf_transfer.core.label_space import LABEL_SEPARATORS, case_variants, split_joined
from hf_transfer.core.markdown import table_row, worst_labels
from hf_transfer.core.metrics import classification_metrics, label_keys
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL, predicted_labels
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class PreparedEvalSet:
    """A set ready to score: texts, optional pairs, and references as the model's label ids (multi-label: multi-hot
    rows over the model's labels)."""

    name: str
    path: str
    texts: Sequence[str]  # a list, or a lazy `datasets` column
    pairs: Sequence[str] | None
    references: list[int] | np.ndarray
    summary: dict
    problem_type: str = SINGLE_LABEL


def _integer(name: str) -> int | None:
    """The integer a label name spells, as the data's cleaning reads one (`-1`, `07`); None for other names, such
    as `①` or `²`, which `str.isdigit` accepts but `int` does not."""
    value = normalise_scalar(name)
    return value if isinstance(value, int) else None


def align_labels(data_names: list[str], model_names: list[str], source: str) -> dict[int, int]:
    """Map the data's label ids to the model's by name; integer labels that are not names are taken as ids, unless
    the model's own names are integers (ratings 1..5): then 0 would be id 0 while 1 was name '1'. The model's names
    are read as the data's are (`false` is `False`: a model trained before booleans had one spelling)."""
    keys = label_name_keys(model_names)
    if set(map(str, data_names)) == {"-1"} and "-1" not in keys:
        raise DataError(
            f"every label in {source!r} is -1, the mark of a hidden label (GLUE's test files): there is nothing to "
            "score; hf-transfer predict writes the model's predictions for it."
        )
    if set(data_names) <= set(keys):
        return {i: keys.index(n) for i, n in enumerate(data_names)}
    integer_names = any(_integer(n) is not None for n in model_names)
    ids = [_integer(n) for n in data_names]
    if not integer_names and all(i is not None for i in ids):
        outside = sorted(i for i in ids if not 0 <= i < len(model_names))
        if not outside:
            if any(not re.fullmatch(r"LABEL_\d+", str(n)) for n in model_names):  # named labels: say how ids read
                shown = ", ".join(f"{i} = {model_names[i]}" for i in sorted(set(ids)))
                logger.warning(
                    f"the labels of {source!r} are integers, read as the model's label ids ({shown}); pass "
                    "--label_mapping '{file_value: model_label, ...}' to read them otherwise."
                )
            return dict(enumerate(ids))
        # "labels [0, 1, 2] are not among the model's labels" blamed the ids that are fine
        named = ", ".join(f"{i} = {n}" for i, n in list(enumerate(model_names))[:20])
        named += f", ... ({len(model_names)} in all)" if len(model_names) > 20 else ""
        raise DataError(
            f"{source!r} has integer labels, read as the model's label ids 0..{len(model_names) - 1} "
            f"({named}), but {listed(outside)} are not among them; "
            "pass --label_mapping '{file_value: model_label, ...}' to translate them."
        )
    unknown = sorted(set(data_names) - set(model_names))
    joined = [
        v for v in unknown if any(set(split_joined(v, sep) or [""]) <= set(model_names) for sep in LABEL_SEPARATORS)
    ]
    if joined:  # `Tops;recommended`: a mapping cannot split a cell into labels
        raise DataError(
            f"labels such as {joined[0]!r} in {source!r} join several of the model's labels in one cell; write each "
            'row\'s labels as a list (["a", "b"], a JSON list string in csv/tsv).'
        )
    alike = case_variants(unknown, model_names)  # `Positive` for the model's `positive`
    raise DataError(
        f"labels {listed(unknown)} in {source!r} are not among the model's labels {listed(model_names)}"
        + (f" (these differ from the model's only in letter case: {alike})" if alike else "")
        + "; pass --label_mapping '{file_value: model_label, ...}' to translate them."
    )


def reads_with_trained_mapping(found: set[str], model_names, trained: dict | None) -> bool:
    """Whether labels `found` in a file are read with the training run's `label_mapping` (`trained`): some are not
    the model's names, and every one is a key of that mapping or a model name (ratings 1 to 5 for bad/neutral/good)."""
    keys = {str(normalise_scalar(k)) for k in trained or {}}
    known = set(label_name_keys(model_names))
    return bool(keys) and not found <= known and found <= keys | known


def prepare_eval_set(
    eval_set: EvalSet, args: EvalDataArguments, model_names: list[str], problem_type: str = SINGLE_LABEL
) -> PreparedEvalSet:
    """Read, clean and label-align one set for a model of `problem_type` (raises DataError on bad input). A
    multi-label model takes list labels, or one label per row (each row then has that label alone). Labels the model
    does not know, every one a key of the `label_mapping` its training run recorded (`trained_label_mapping`, set by
    `default_trained_columns`), are read with that mapping when none is given (the model's own names pass as they
    are): the clothing reviews' star ratings, mapped to good/neutral/bad in training, were refused when the same
    file was scored ("[3, 4, 5] are not among them"), and a file of ratings 1 and 2 alone read them as label ids."""
    data_args = DataArguments(
        validation_file=eval_set.path,
        text_column_name=args.text_column_name,
        text_pair_column_name=args.text_pair_column_name,
        label_column_name=args.label_column_name,
        label_mapping=eval_set.label_mapping if eval_set.label_mapping is not None else args.label_mapping,
        csv_quoting=args.csv_quoting,
        max_eval_samples=args.max_eval_samples,
    )
    # A mapping that translates some values (`{pos: positive}`) dropped the rows already labelled with the model's
    # names as unmapped: those read as themselves (`core.label_space.label_space`).
    data_args.passing_names = list(model_names)
    if eval_set.name != args.validation_name:  # what load_data's warnings call its rows (it reads them as validation)
        data_args.shown_splits = {"validation": f"extra_eval {eval_set.name}"}
    try:
        prepared = load_data(data_args, require_train=False)
    except DataError as err:  # the messages speak of "the validation data": name the extra set it really is
        if eval_set.name == args.validation_name:
            raise
        message = str(err).replace(" the validation data", " this set").replace(" the validation rows", " its rows")
        raise DataError(f"extra_eval {eval_set.name}={eval_set.path}: {message}") from None
    trained = None if data_args.label_mapping is not None else getattr(args, "trained_label_mapping", None)
    if reads_with_trained_mapping(set(map(str, prepared.label_names)), model_names, trained):
        logger.warning(f"reading the labels of {eval_set.path!r} with the label_mapping of the model's training run.")
        return prepare_eval_set(replace(eval_set, label_mapping=trained), args, model_names, problem_type)
    if prepared.problem_type == MULTI_LABEL and problem_type != MULTI_LABEL:
        raise DataError(
            f"{eval_set.path!r} has list labels (multi-label) but the model is single-label: give one label per row."
        )
    to_model_id = align_labels(prepared.label_names, model_names, eval_set.path)
    split = prepared.datasets["validation"]
    labels = split["labels"][:]
    if problem_type == MULTI_LABEL:
        references = np.zeros((len(labels), len(model_names)), dtype=np.int64)
        for row, value in enumerate(labels):
            hot = np.flatnonzero(np.asarray(value) > 0.5) if prepared.problem_type == MULTI_LABEL else [value]
            references[row, [to_model_id[int(i)] for i in hot]] = 1
    else:
        references = [to_model_id[label] for label in labels]
    return PreparedEvalSet(
        name=eval_set.name,
        path=eval_set.path,
        texts=split[prepared.text_column],  # lazy columns, read a window at a time by predict_logits
        pairs=split[prepared.text_pair_column] if prepared.text_pair_column else None,
        references=references,
        summary=prepared.summary.get("validation", {}),
        problem_type=problem_type,
    )


def prepare_eval_sets(
    args: EvalDataArguments, model_names: list[str], problem_type: str = SINGLE_LABEL
) -> list[PreparedEvalSet]:
    return [prepare_eval_set(s, args, model_names, problem_type) for s in args.eval_sets()]


def score_set(model, tokenizer, data: PreparedEvalSet, model_names: list[str], args: EvalDataArguments, **kw) -> dict:
    """The full classification report of `model` on one set (metrics, per-class scores, confusion matrix)."""

    logits = predict_logits(
        model,
        tokenizer,
        data.texts,
        data.pairs,
        batch_size=args.per_device_eval_batch_size,
        max_length=args.max_seq_length,
        desc=kw.pop("desc", f"evaluate {data.name}"),
        **kw,
    )
    kind = data.problem_type
    report = classification_metrics(predicted_labels(logits, kind), data.references, model_names, kind)
    report["samples"] = len(data.references)
    return report


# Why a row of a set was not scored (its cleaning summary's `dropped` keys), as the warning says it.
_LEFT_OUT = {"empty_text": "with empty text", "missing_label": "with no label",
             "unmapped_label": "with a label that label_mapping does not name"}  # fmt: skip


def rows_left_out(data: PreparedEvalSet) -> dict[str, int]:
    """The set's rows that were not scored, by reason (`rows_empty_text`, ...), for the reasons that left any out;
    with the rows past `max_eval_samples` too, so that they and `samples` add up to the file's rows."""
    left = {f"rows_{reason}": n for reason, n in data.summary.get("dropped", {}).items() if n}
    cut = data.summary.get("cut_by_max_samples")
    return {**left, "rows_cut_by_max_eval_samples": cut} if cut else left


def left_out_warning(sets: Sequence[PreparedEvalSet]) -> str | None:
    """One sentence naming, per set, the rows left out of its scores; None when every row was scored."""
    notes = []
    for data in sets:
        counts = [(n, _LEFT_OUT[reason]) for reason, n in data.summary.get("dropped", {}).items() if n]
        if counts:
            parts = [f"{n} row(s) {why}" if i == 0 else f"{n} {why}" for i, (n, why) in enumerate(counts)]
            listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
            notes.append(f"{data.name} ({data.path}) {listed}")
    return "rows left out of the scores: " + "; ".join(notes) + "." if notes else None


def headline_accuracy(report: dict) -> float:
    """Accuracy, or for a multi-label report the share of rows whose whole label set is right (subset accuracy)."""
    return report["accuracy"] if "accuracy" in report else report["subset_accuracy"]


def scalars(report: dict) -> dict:
    return {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def reports_markdown(reports: dict[str, dict], label_names: list[str], scores_file: str | None) -> str:
    """One row per set: rows, accuracy, macro-F1, then precision and recall of each class (multi-label: F1 of each
    label). Past `TABLE_LABELS` labels, those columns for the labels `worst_labels` picks on the first set only, and
    a line that says where every label's scores are (`scores_file`; None: not written)."""

    keys, names = label_keys(label_names), list(label_names)
    first = next(iter(reports.values()))
    matrix = first.get("confusion_matrix")
    shown = worst_labels([first.get(f"f1_{key}", 0.0) for key in keys], [sum(r) for r in matrix] if matrix else None)
    if shown is not None:
        keys, names = [keys[i] for i in shown], [names[i] for i in shown]
    if any("subset_accuracy" in report for report in reports.values()):  # multi-label: F1 per label
        columns = ["rows", "subset accuracy", "micro-F1", "macro-F1"] + [f"F1 {n}" for n in names]
        lines = [table_row(["set", *columns]), "|---|" + "---:|" * len(columns)]
        for name, r in reports.items():
            cells = [str(r.get("samples", ""))] + [f"{r[k]:.4f}" for k in ("subset_accuracy", "f1_micro", "f1_macro")]
            lines.append(table_row([name, *cells, *(f"{r[f'f1_{key}']:.4f}" for key in keys)]))
    else:
        columns = ["rows", "accuracy", "macro-F1"] + [f"{m} {n}" for n in names for m in ("P", "R")]
        lines = [table_row(["set", *columns]), "|---|" + "---:|" * len(columns)]
        for name, report in reports.items():
            cells = [str(report.get("samples", "")), f"{report['accuracy']:.4f}", f"{report['f1_macro']:.4f}"]
            for key in keys:
                cells += [f"{report[f'precision_{key}']:.4f}", f"{report[f'recall_{key}']:.4f}"]
            lines.append(table_row([name, *cells]))
    if shown is not None:
        where = f"are in `{scores_file}`" if scores_file else "are written by `--output_file metrics.json`"
        lines += [
            "",
            f"{len(label_names)} labels make too wide a table: per-label columns are shown for the {len(shown)} with "
            f"the lowest F1 on {next(iter(reports))}; every label's scores {where}.",
        ]
    return "\n".join(lines) + "\n"
