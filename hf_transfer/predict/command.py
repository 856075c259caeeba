"""`hf-transfer predict`: label every row of a file with a classifier (a model folder or Hub id, an adapter folder, or
an exported ONNX folder). The file is read, predicted and written in chunks (length-sorted batches within each), so
memory stays bounded for any number of rows; the rows keep their input order. Everything that can be wrong with the
input (paths, columns, labels) is found before the model loads."""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path

from hf_transfer.adapters.inference import (
    InferenceSource,
    check_input_length,
    default_trained_columns,
    load_inference_model,
    resolve_inference_model,
    resolve_max_seq_length,
)
from hf_transfer.core.cleaning import LABEL_COLUMN_CANDIDATES, PAIR_OPTION, check_text_cells, resolve_columns
from hf_transfer.core.eval_sets import scalars
from hf_transfer.core.folders import written_together
from hf_transfer.core.inference import predict_logits
from hf_transfer.core.memory import can_release_freed_memory, trim_freed_memory
from hf_transfer.core.prediction_columns import (
    PREDICTED_LABEL,
    empty_text_mask,
    output_column_names,
    prediction_columns,
)
from hf_transfer.core.runtime import progress_bar
from hf_transfer.core.tables import blank_header_names, count_rows, iter_table
from hf_transfer.core.tasks import MULTI_LABEL, predicted_labels
from hf_transfer.errors import ConfigError, DataError
from hf_transfer.predict.arguments import PredictArguments
from hf_transfer.predict.references import References, scan_references
from hf_transfer.predict.writer import PredictionWriter

logger = logging.getLogger(__name__)


def _columns(args: PredictArguments, first) -> tuple[str, str | None, str | None]:
    """The text, pair and label columns (label None when the file has none)."""
    columns = [str(c) for c in first.columns]
    text, pair, label = resolve_columns(args, {"input": columns})
    if args.label_column_name is None:
        label = next((c for c in LABEL_COLUMN_CANDIDATES if c in columns and c not in (text, pair)), None)
    elif args.label_column_name not in columns:
        raise DataError(
            f"label_column_name {args.label_column_name!r} is not a column of {args.input_file!r}, whose columns are "
            f"{columns}; leave it unset for a file without labels."
        )
    return text, pair, label


# Above this many labels, one probability column per label is said to cost more than it gives (1,000 labels: 218 MB
# per 10,000 rows, written 5× slower than 2 labels), with the option that writes the most probable few.
MANY_LABELS = 50


def _check_output_columns(source: InferenceSource, args: PredictArguments, columns) -> list[str]:
    names = output_column_names(source.label_names, args.top_k)
    if not args.top_k and len(source.label_names) > MANY_LABELS:
        logger.warning(
            f"the model has {len(source.label_names)} labels, so each row gets {len(source.label_names)} prob_<label> "
            "columns; --top_k K writes the K most probable labels and their probabilities instead."
        )
    if args.top_k and args.top_k > len(source.label_names):
        raise ConfigError(
            f"top_k is {args.top_k} but the model has only {len(source.label_names)} labels; set top_k to "
            f"{len(source.label_names)} or less, or drop it for one prob_<label> column per label."
        )
    clash = [name for name in names if name in set(map(str, columns))]
    if clash:
        raise DataError(
            f"{args.input_file!r} already has column(s) {clash} that predict would write; rename them (or drop the "
            "output of an earlier predict run from the input)."
        )
    return names


def _check_text(chunk, text: str, pair: str | None, output_file: str) -> None:
    check_text_cells(chunk[text], text)
    if pair:
        check_text_cells(chunk[pair], pair, PAIR_OPTION)
    if Path(output_file).suffix.lower() != ".parquet":  # a parquet input's BINARY column that is not UTF-8 text
        for name in (c for c in chunk.columns if chunk[c].dtype == object):
            if any(isinstance(value, bytes) for value in chunk[name]):
                raise DataError(
                    f"column {name!r} of the input holds bytes that are not UTF-8 text, which a "
                    f"{Path(output_file).suffix} output cannot hold as they are; write the output as .parquet (it "
                    "keeps them), or drop the column from the input."
                )


def run_predict(args: PredictArguments) -> dict:
    source = resolve_inference_model(
        args.model_name_or_path,
        args.base_model_name_or_path,
        onnx_file=args.onnx_file,
        command="predict",
        revision=args.model_revision,
    )
    # The columns the model was trained with, when the file has them; a pair model's checked.
    default_trained_columns(source, args, args.input_file, check_as=args.model_name_or_path)
    args.max_seq_length = resolve_max_seq_length(source, args.max_seq_length)  # the trained length by default
    # Every chunk has the first one's columns: those are checked (text, label, clashes) and give the output's header.
    chunks = iter_table(args.input_file, args.chunk_rows, args.csv_quoting, fixed=True)
    first = next(chunks)
    text, pair, label = _columns(args, first)
    check_input_length(source, args.max_seq_length, pair is not None)
    _check_output_columns(source, args, first.columns)
    _check_text(
        first, text, pair, args.output_file
    )  # the first chunk before the model loads; each later one before it is predicted
    multi = source.problem_type == MULTI_LABEL
    if args.threshold is not None and not multi:
        raise ConfigError(
            f"threshold applies to multi-label models; {args.model_name_or_path!r} is single-label, so each row gets "
            "its most probable label (--top_k K writes the K most probable)."
        )
    threshold = 0.5 if args.threshold is None else args.threshold
    references = None
    if label is not None:
        references = scan_references(
            args.input_file, text, label, source.label_names, multi,
            chunk_rows=args.chunk_rows, csv_quoting=args.csv_quoting, label_mapping=args.label_mapping,
            trained_label_mapping=getattr(args, "trained_label_mapping", None),
        )  # fmt: skip
    total = count_rows(args.input_file)
    replaces = Path(args.output_file).exists()  # said in the summary: the file is replaced only once complete
    model, tokenizer = load_inference_model(source, on_gpu=True)

    started = time.perf_counter()
    trim = can_release_freed_memory()
    empty_rows = second_texts = 0
    unknown_only: list[int] = []  # rows of each chunk whose text the tokenizer knows nothing of
    with (
        written_together([Path(args.output_file)]),
        PredictionWriter(args.output_file, blank_header_names(args.input_file, first.columns)) as writer,
    ):
        with progress_bar(total=total, desc="predict", unit="row") as bar:
            for chunk in itertools.chain([first], chunks):
                if chunk is not first:  # the first was checked before the model loaded
                    _check_text(chunk, text, pair, args.output_file)
                empty = empty_text_mask(chunk[text])
                texts = chunk[text][~empty].astype(str).tolist()
                pairs = None
                if pair:
                    pairs = chunk[pair][~empty].where(chunk[pair][~empty].notna(), "").astype(str).tolist()
                    second_texts += sum(1 for p in pairs if p.strip())
                logits = predict_logits(
                    model, tokenizer, texts, pairs, batch_size=args.batch_size, max_length=args.max_seq_length,
                    bar=bar, unknown_only=unknown_only,
                )  # fmt: skip
                bar.update(int(empty.sum()))
                empty_rows += int(empty.sum())
                added = prediction_columns(
                    logits, empty, source.label_names, source.problem_type, args.top_k, threshold
                )
                writer.write(chunk.reset_index(drop=True).assign(**added))
                if references is not None:
                    references.add(chunk[label], empty, predicted_labels(logits, source.problem_type, threshold))
                if trim:  # the heap holes of each chunk's batch shapes (3-5% of the peak: docs/predict_export.md)
                    trim_freed_memory(record=False)
            if bar.total != bar.n:  # counted lines, not rows, where quoted cells span lines: the bar ends full
                bar.total = bar.n
                bar.refresh()
        writer.commit()
    seconds = time.perf_counter() - started
    said = []
    if unknown_only:
        said.append(
            f"{len(unknown_only)} row(s) are unknown tokens alone to the model's tokenizer (emoji, or a script its "
            "vocabulary lacks): their labels say nothing of their text"
        )
    if pair and writer.rows > empty_rows and not second_texts:  # as train and evaluate say it
        said.append(f"the second text column {pair!r} is empty in every row: the model read the first text alone")
    return _summary(args, source, writer.rows, empty_rows, seconds, references, replaces, said)


def _summary(
    args, source: InferenceSource, rows: int, empty_rows: int, seconds: float, references, replaces: bool, said=()
) -> dict:
    """The results block; `said`: the pass's own warnings, after those of the rows and labels."""
    summary = {
        "model": f"{args.model_name_or_path} ({source.describe()})",
        "rows": rows,
        "empty_text_rows": empty_rows,
        "predicted_rows": rows - empty_rows,
        "seconds": seconds,
        "rows_per_second": rows / seconds if seconds > 0 else 0.0,
        "output_file": args.output_file + (" (replaced the file that was there)" if replaces else ""),
    }
    if args.threshold is not None:
        summary["threshold"] = args.threshold
    warnings = []
    if empty_rows:
        empty = f"{empty_rows} row(s) have empty text"
        warnings.append(f"{empty}: {PREDICTED_LABEL} is empty for them, and they have no score")
    report = references.metrics() if isinstance(references, References) else None
    if report is not None:
        summary["label_column"] = references.column
        summary.update(scalars(report))
        left_out = {"missing_label": references.missing_label, "unmapped_label": references.unmapped_label}
        summary.update({f"rows_{k}": v for k, v in left_out.items() if v})
    elif references is not None:
        warnings.append(f"no row has a usable label in column {references.column!r}, so no metrics were computed")
    warnings += said
    if warnings:
        summary["warning"] = "; ".join(warnings) + "."
    return summary
