"""Model cards from `CardData`, through `huggingface_hub.ModelCard.from_template`, merged into any README.md the
folder already holds: generated sections sit between `<!-- hf-transfer:begin NAME -->` and `<!-- hf-transfer:end
NAME -->` and are rewritten; everything else, and YAML keys the user added, survive."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from hf_transfer.core.folders import CARD_DATA_FILE, RUN_RECORD_FILE, write_text_atomic
from hf_transfer.core.language import example_sentence
from hf_transfer.core.markdown import label_list, markdown_text, table_cell, table_cells, worst_labels
from hf_transfer.core.metrics import label_keys
from hf_transfer.core.tasks import METRIC_NAMES
from hf_transfer.core.vocabulary import UNKNOWN_WARN_PERCENT
from hf_transfer.outputs.card_data import NO_HELD_OUT, CardData, detect_adapter
from hf_transfer.outputs.card_pictures import card_pictures
from hf_transfer.outputs.card_rows import (
    adapter_rows,
    alpha_was_chosen,
    distill_rows,
    epoch_table,
    fmt,
    freeze_rows,
    freeze_text,
    hyper_rows,
    merge_rows,
    merge_trained_model,
    recipe_rows,
    scored_in_text,
    speed_words,
    sweep_table,
)
from hf_transfer.outputs.export_card import export_fields, export_summary, export_tags
from hf_transfer.outputs.few_shot_card import few_shot_rows
from hf_transfer.outputs.plots import CONFUSION_COUNTED_LABELS
from hf_transfer.outputs.readme import merge_readme, readme_note
from hf_transfer.outputs.search_note import chosen_note

TEMPLATE = "model_card.md.jinja"
EXAMPLE_TEXT = "I really enjoyed this!"
LOCAL_DATASET_TYPE = "unknown"  # the model-index's dataset type for metrics measured on local files
EXAMPLE_PAIR = "Would buy again"  # the second text of the quick start, for a model trained on text pairs
_METRIC_NAMES = {
    "accuracy": "Accuracy",
    "subset_accuracy": "Subset accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
}


def template_path() -> Path:
    """The source tree's template when running from a checkout, else the copy shipped inside the wheel
    (`hf_transfer.model_cards`). The checkout comes first: an editable install maps the package to one checkout
    only, and a second worktree must render its own templates."""
    source = Path(__file__).resolve().parents[2] / "model_cards" / TEMPLATE  # hf_transfer/outputs/ -> checkout root
    if source.is_file():
        return source
    return Path(str(resources.files("hf_transfer.model_cards").joinpath(TEMPLATE)))


def _metric_id(key: str) -> tuple[str, str | None, str]:
    """`f1_macro` -> ("f1", "macro", "F1 (macro)"): a Hub metric type, its config and a display name."""
    for base in ("subset_accuracy", "accuracy", "precision", "recall", "f1"):
        if key == base:
            return base, None, _METRIC_NAMES[base]
        if key.startswith(base + "_"):
            config = key[len(base) + 1 :]
            return base, config, f"{_METRIC_NAMES[base]} ({config})"
    return key, None, key


def model_index_dataset(c: CardData, split: str) -> tuple[str, str]:
    """The model-index's dataset type and name for `split`'s metrics: the Hub dataset they were measured on, or for
    local files the type `unknown` (no Hub id claimed; SetFit's and Sentence Transformers' cards write the same) and
    the file's name. A data folder's name (`data`, `sst2`) would claim a Hub dataset id that does not exist."""
    if c.eval_hub_dataset:
        return c.eval_hub_dataset, c.eval_hub_dataset
    file = c.eval_files.get(split)
    return LOCAL_DATASET_TYPE, f"{file} (local file)" if file else "local data"


def shown_labels(c: CardData) -> list[int] | None:
    """Past `CONFUSION_COUNTED_LABELS` labels (450 labels gave 1,350 rows of per-label scores, in the table and in the
    model-index), the ids of the labels whose scores the card shows (`worst_labels` on validation); None: all."""
    names = c.label_names or []
    support = [sum(row) for row in c.confusion_matrix] if c.confusion_matrix and not c.multi_label else None
    f1 = [c.metrics.get(f"f1_{key}", 0.0) for key in label_keys(names)]
    return worst_labels(f1, support, CONFUSION_COUNTED_LABELS)


def card_metrics(c: CardData) -> tuple[dict, dict, str | None]:
    """The validation and test scores the card shows (every average; per-label scores of `shown_labels` only), and
    the sentence that says which labels were left out and where their scores are."""
    shown = shown_labels(c)
    if shown is None:
        return c.metrics, c.test_metrics, None
    keys = label_keys(c.label_names)
    hidden = set(keys) - {keys[i] for i in shown}

    def kept(metrics: dict) -> dict:
        return {k: v for k, v in metrics.items() if _metric_id(k)[1] not in hidden}

    where = f"`{RUN_RECORD_FILE}` (`export.validation_report`)" if c.task == "export" else "`eval_results.json`"
    where += " and `test_results.json`" if c.test_metrics and c.task != "export" else ""
    note = (
        f"{len(keys)} labels make too long a table: per-label scores are shown for the {len(shown)} with the lowest "
        f"validation F1; the other {len(hidden)} labels' scores are in {where}."
    )
    return kept(c.metrics), kept(c.test_metrics), note


def label_rows(c: CardData, in_folder: bool) -> tuple[list[list], str | None]:
    """The Labels table's rows (id, name): past `CONFUSION_COUNTED_LABELS` labels (450 labels gave a 450-row table
    beside a results table already cut to 30 labels), the first that many ids, and the sentence that says how many
    are left out and where the full list is."""
    names = c.label_names or []
    rows = [[i, markdown_text(name)] for i, name in enumerate(names[:CONFUSION_COUNTED_LABELS])]
    if len(names) <= CONFUSION_COUNTED_LABELS:
        return rows, None
    # An adapter folder has no config.json: its labels are in the run record (and the quick start's `labels`).
    where = f"`{RUN_RECORD_FILE}` (`label_names`)" if in_folder else "`config.json` (`id2label`)"
    note = (
        f"{len(names)} labels make too long a table: it lists ids 0 to {len(rows) - 1}; the other "
        f"{len(names) - len(rows)} labels are in {where}."
    )
    return rows, note


def eval_results(c: CardData) -> list:
    from huggingface_hub import EvalResult

    results = []
    validation, test, _ = card_metrics(c)
    for split, metrics in (("validation", validation), ("test", test)):
        dataset_type, dataset_name = model_index_dataset(c, split)
        for key, value in metrics.items():
            metric_type, metric_config, metric_name = _metric_id(key)
            results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_split=c.eval_splits.get(split, split),
                    dataset_config=c.eval_hub_dataset_config if c.eval_hub_dataset else None,
                    metric_type=metric_type,
                    metric_config=metric_config,
                    metric_name=metric_name,
                    metric_value=round(float(value), 4),
                )
            )
    return results


def _data_lines(c: CardData) -> list[str]:
    lines = []
    for split, info in c.splits.items():
        dropped = info.get("dropped") or {}
        text = f"**{split}**: {info['rows']:,} rows"
        if dropped:
            text += (
                f" ({sum(dropped.values()):,} dropped: "
                + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items())
                + ")"
            )
        else:
            text += ", none dropped"
        if info.get("without_labels"):  # multi-label rows with an empty list: kept, negative for every label
            text += f"; {info['without_labels']:,} with an empty label list (a negative example of every label)"
        if info.get("sharing_train_input"):  # scores on them are measured on text the model trained on
            text += f"; {info['sharing_train_input']:,} with the same input as a training row (their scores read high)"
        if info.get("sharing_validation_input"):  # a test set that repeats the validation set is not held out from it
            text += f"; {info['sharing_validation_input']:,} with the same input as a validation row"
        if info.get("carved_to_validation"):  # the rows the run read, said whole: carved and cut rows are not dropped
            text += f"; {info['carved_to_validation']:,} more moved to the validation split"
        if info.get("cut_by_max_samples"):
            limit = "max_train_samples" if split == "train" else "max_eval_samples"
            text += f"; {info['cut_by_max_samples']:,} more left out by {limit}"
        if (info.get("unknown_token_percent") or 0) > UNKNOWN_WARN_PERCENT:  # as `train` warned of it
            unknown = info["unknown_token_percent"]
            text += f"; {unknown:g}% of its tokens unknown to the tokenizer (it saw little of them)"
        lines.append(text)
    lines += _transfer_lines((c.distillation or {}).get("transfer_set") or {})
    if c.validation_carved:
        lines.append(f"The validation split was carved from train ({c.validation_percentage}%, seeded, stratified).")
    text, pair = c.columns.get("text"), c.columns.get("text_pair")
    if text and pair:
        lines.append(f"Input: a text pair, column `{text}` then column `{pair}` (empty where `{pair}` is missing).")
    elif text:
        lines.append(f"Input: column `{text}`.")
    return lines


def _transfer_lines(transfer: dict) -> list[str]:
    """The distillation rows beyond train's labelled ones: unlabelled files (by name) and augmented copies."""
    lines = []
    if transfer.get("unlabelled"):
        files = (transfer.get("unlabelled_files") or {}).get("files") or []
        counts = len(files) > 1  # each file's rows, when there are several
        named = ", ".join(f"`{Path(str(f['file'])).name}`" + (f" ({f['rows']:,})" if counts else "") for f in files)
        lines.append(f"**unlabelled** (targets from the teacher alone): {transfer['unlabelled']:,} rows"
                     + (f" of {named}" if named else ""))  # fmt: skip
    if transfer.get("augmented"):
        a = transfer.get("augmentation") or {}
        how = f" ({a['method']}, p={a['p']}, {a['factor']} per labelled row)" if a.get("method") else ""
        lines.append(f"**augmented** (targets from the teacher alone): {transfer['augmented']:,} rows{how}")
    return lines


def _transfer_words(c: CardData) -> str:
    """What the student trained on beyond the labelled rows, for the summary's first sentence."""
    transfer = (c.distillation or {}).get("transfer_set") or {}
    extra = [f"{transfer[k]:,} {k}" for k in ("unlabelled", "augmented") if transfer.get(k)]
    return f", plus {' and '.join(extra)} rows labelled by the teacher" if extra else ""


def _summary(c: CardData) -> str:
    n = len(c.label_names)
    kind = "multi-label" if c.multi_label else f"{n}-class"
    train_rows = c.splits.get("train", {}).get("rows")
    data = f" on {train_rows:,} rows of {c.data_source_name()}{_transfer_words(c)}" if train_rows else ""
    if c.merge:
        text = f"A {kind} text classifier ({label_list(c.label_names)}): {c.one_line()}, made with hf-transfer merge."
        metric, value = c.headline_metric()
        if metric:
            text += f" Validation {metric.replace('_', ' ')}: {value:.4f}."
        return text
    text = f"A {kind} text classifier ({label_list(c.label_names)}): {c.one_line()}, trained with hf-transfer{data}."
    d = c.distillation
    if d:
        text += f" Distillation used α={d.get('alpha')} and T={d.get('temperature')}."
        if d.get("retention_percent") is not None and d.get("speedup"):
            text += (
                f" The student keeps {d['retention_percent']:.1f}% of its teacher's validation "
                f"{d.get('teacher_eval_metric', 'accuracy')} and runs {speed_words(d['speedup'])}."
            )
    if not c.adapter:
        text += f" Freezing: {freeze_text(c.freeze)}."
    metric, value = c.headline_metric()
    if metric and not (c.export and c.export.get("validation_report")):  # an export's own scores: export_summary
        text += f" Validation {metric.replace('_', ' ')}: {value:.4f}."
    processes = "1 process" if c.world_size == 1 else f"{c.world_size} processes"
    return text + f" Precision {c.precision}{scored_in_text(c)}, {processes}."


def _intended_use(c: CardData) -> str:
    if c.eval_dataset.startswith(NO_HELD_OUT):
        scored = "was not evaluated on held-out data"
    else:
        scored = f"was evaluated only on {c.eval_dataset}; it was not tested on other data"
        repeats = (c.splits.get("test") or {}).get("sharing_validation_input")
        test = "" if not c.test_metrics else "; the test score is not" if not repeats else (
            f"; so is the test score: {repeats:,} test rows are validation rows"
        )  # fmt: skip
        test = test or ("; the extra sets' scores are not" if (c.merge or {}).get("extra_sets") else "")
        if c.merge:  # its own scores, of the α a sweep chose on the validation set (a given α: nothing chosen)
            chosen = alpha_was_chosen(c.merge) and c.metrics
            scored += f" (α was chosen by its validation score, which is therefore optimistic{test})" if chosen else ""
        elif c.recipe.get("best_model"):  # load_best_model_at_end chose among checkpoints by that score
            scored += f" (the checkpoint kept was chosen by its validation score, which is therefore optimistic{test})"
    return (
        f"Classifying text into the labels above ({label_list(c.label_names)}), for text like the training data "
        f"({c.data_source}). The model {scored}, so expect lower accuracy on other domains, styles or label "
        "definitions, and measure it on your own data before relying on it. Any biases of the base model and of the "
        "training data carry over."
    )


def build_card(c: CardData, folder: str | Path | None = None):
    """The rendered `ModelCard` (not yet merged with an existing README)."""
    from huggingface_hub import ModelCard, ModelCardData

    tags = ["hf-transfer", "transfer-learning", "text-classification"]
    tags += ["distillation"] if c.distillation else []
    tags += ["model-merging", "wise-ft"] if c.merge else []
    if c.adapter:
        tags += ["peft"] + ([c.adapter["method"]] if c.adapter.get("method") else [])
    tags += export_tags(c.export)
    in_folder = bool(c.adapter and c.adapter.get("in_folder"))
    card_data = ModelCardData(
        base_model=c.base_model if c.base_model_is_hub_id else None,
        datasets=c.datasets or None,
        language=c.language,
        license=c.license,
        # An ONNX export holds no transformers weights: the Hub's "Use in Transformers" snippet would fail there.
        library_name="peft" if in_folder else None if c.export else "transformers",
        pipeline_tag="text-classification",
        tags=tags,
        model_name=c.model_name,
        eval_results=eval_results(c) or None,
    )
    repo_id = c.repo_id or c.local_path or c.model_name
    folder = Path(folder) if folder else None
    has_tokenizer = folder is None or (folder / "tokenizer_config.json").is_file()
    distillation, comparison = distill_rows(c)
    sweep_note, sweep_columns, sweep = sweep_table(c)
    epoch_columns, epochs = epoch_table(c)
    splits = (["validation"] if c.metrics else []) + (["test"] if c.test_metrics else [])
    validation, test, metrics_note = card_metrics(c)
    if chosen := c.recipe.get("chosen_by_search"):  # the best of many tries on the same rows: optimistic
        metrics_note = " ".join(filter(None, [chosen_note(chosen), metrics_note]))
    labels, labels_note = label_rows(c, in_folder)
    scored = [m for m in (validation, test) if m]  # a few-shot run with a test_file alone has test scores only
    names = {k: markdown_text(_metric_id(k)[2]) for k in (scored[0] if scored else {})}  # a label's name is in some
    metric_rows = [[name, *(fmt(m.get(k)) for m in scored)] for k, name in names.items()]
    export = export_fields(c.export)
    selection = (c.merge or {}).get("selection_metric") or "accuracy"  # what the α sweep's picture plots
    # Every table cell escaped: a `|` in a label name or a freeze_patterns regex would split the row.
    passed_over = (c.recipe or {}).get("few_shot_passed_over")  # the same command alone would have taken the route
    rows = {"distill_rows": distillation, "comparison_rows": comparison, "adapter_rows": adapter_rows(c),
            "merge_rows": merge_rows(c), "sweep_rows": sweep, "freeze_rows": freeze_rows(c),
            "recipe_rows": recipe_rows(c), "few_shot_rows": few_shot_rows(c.few_shot, passed_over),
            "hyper_rows": hyper_rows(c), "export_rows": export["export_rows"], "speed_rows": export["speed_rows"],
            "metric_rows": metric_rows,
            "epoch_rows": epochs, "label_rows": labels}  # fmt: skip
    label_cells = [markdown_text(name) for name in c.label_names or []]
    headers = {"sweep_columns": sweep_columns, "speed_columns": export["speed_columns"],
               "epoch_columns": epoch_columns, "label_cells": label_cells}  # fmt: skip
    tables = {name: table_cells(value) for name, value in rows.items()}
    tables |= {name: [table_cell(value) for value in header] for name, header in headers.items()}
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=c.model_name,
        repo_id=repo_id,
        unpushed=c.repo_id is None,
        summary=export_summary(c, _summary(c)),
        quickstart="onnx" if c.export else "peft" if in_folder else "pipeline",
        merge_trained_model=merge_trained_model(c.merge),
        tokenizer_source=repo_id if has_tokenizer else (c.base_model or repo_id),
        revision_arg=f", revision={json.dumps(c.repo_revision)}" if c.repo_id and c.repo_revision else "",
        tokenizer_revision=has_tokenizer and bool(c.repo_id and c.repo_revision),
        repo_revision=c.repo_revision,
        # Card data saved before it recorded the length: a training run's hyperparameters name it.
        truncation=_truncation(c.max_seq_length or c.hyperparameters.get("max_seq_length")),
        example_text=example_sentence(c.language, c.language_source, EXAMPLE_TEXT),
        example_pair=EXAMPLE_PAIR if c.columns.get("text_pair") else None,
        # predict reads `text` by default and a pair model refuses a file without its second column: name both
        column_flags="".join(
            f" --{flag} {c.columns[key]}"
            for key, flag in (("text", "text_column_name"), ("text_pair", "text_pair_column_name"))
            if c.columns.get("text_pair") and c.columns.get(key)
        ),
        multi_label=c.multi_label,
        label_names=c.label_names,
        data_source=c.data_source,
        data_lines=_data_lines(c),
        sweep_note=sweep_note,
        has_sweep_plot=folder is None or (folder / "merge_sweep.png").is_file(),
        sweep_metric=METRIC_NAMES.get(selection, selection),
        eval_dataset=c.eval_dataset,
        metric_splits=splits,
        metrics_note=metrics_note,
        labels_note=labels_note,
        confusion_matrix=None if c.multi_label else c.confusion_matrix,
        **card_pictures(c, folder),
        intended_use=_intended_use(c),
        speed_note=export["speed_note"],
        onnx_file=export["onnx_file"],
        **tables,
        versions=c.versions,
        hf_transfer_version=c.hf_transfer_version or "",
    )


def _truncation(max_length) -> str:
    """The quick start's tokenizer arguments: truncate where `predict` and `evaluate` do, so that a long text is
    scored as they score it (untruncated, one longer than the model's position table failed inside the model)."""
    valid = isinstance(max_length, int) and not isinstance(max_length, bool) and max_length > 0
    return f"truncation=True, max_length={max_length}" if valid else "truncation=True"


# --- merging with an existing README ---------------------------------------------------------------------------------


def write_model_card(
    folder: str | Path, card_data: CardData, repo_id: str | None = None, revision: str | None = None
) -> Path:
    """Write README.md (merged into an existing one) and save the card data beside it; with `repo_id`, for that repo
    at `revision` (a branch: the quick start must read it there, main may hold nothing or another model)."""
    folder = Path(folder)
    if repo_id:
        card_data.repo_id, card_data.repo_revision = repo_id, revision
        card_data.model_name = repo_id.split("/")[-1]
    card_data.adapter = detect_adapter(folder, card_data.adapter)
    path = folder / "README.md"
    text = str(build_card(card_data, folder))
    if path.is_file():
        text = merge_readme(path.read_text(encoding="utf-8"), text, str(path))
    write_text_atomic(path, text)  # a failed write keeps the README and the user's edits as they were
    card_data.save(folder / CARD_DATA_FILE, **readme_note(text))
    return path
