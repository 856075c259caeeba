"""Which classifier a user points an inference command at (`evaluate`, `predict`, `export`): a model folder or Hub id
(a fine-tuned, merged or distilled model, single- or multi-label), a PEFT adapter folder, or a folder written by
`hf-transfer export` (ONNX). Resolved from configs alone, so a wrong path or a model without a trained head stops the
command before any weights load; then loaded, with its tokenizer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hf_transfer.adapters.adapter_fit import check_adapter_fits
from hf_transfer.adapters.peft_model import adapter_base_config, load_adapter_for_inference
from hf_transfer.core.arguments import DEFAULT_MAX_SEQ_LENGTH
from hf_transfer.core.cleaning import LABEL_COLUMN_CANDIDATES, PAIR_OPTION, TEXT_COLUMN_CANDIDATES
from hf_transfer.core.folders import (
    ADAPTER_CONFIG,
    ONNX_FILE,
    ONNX_INT8_FILE,
    cache_snapshot,
    embedding_model_hint,
    has_tokenizer,
    hub_snapshot_folder,
    is_adapter_folder,
    is_onnx_folder,
    onnx_export_record,
    onnx_export_source,
    read_json_file,
)
from hf_transfer.core.inference import check_room_for_text, check_vocabulary, max_length_limit
from hf_transfer.core.models import (
    align_pad_token,
    check_not_regression,
    check_weights_complete,
    is_sequence_classifier,
    load_classifier,
    load_config,
    load_tokenizer,
    meta_classifier,
)
from hf_transfer.core.run_records import recorded_config
from hf_transfer.core.runtime import check_installed
from hf_transfer.core.tables import file_columns
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL
from hf_transfer.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class InferenceSource:
    """A classifier to run, as resolved before loading: what kind it is, its config (with the labels) and where its
    tokenizer is."""

    name_or_path: str
    kind: str  # "model", "adapter" or "onnx"
    config: object
    tokenizer_source: str
    onnx_file: Path | None = None

    @property
    def label_names(self) -> list[str]:
        return [str(self.config.id2label[i]) for i in range(self.config.num_labels)]

    @property
    def problem_type(self) -> str:
        return MULTI_LABEL if getattr(self.config, "problem_type", None) == MULTI_LABEL else SINGLE_LABEL

    def describe(self) -> str:
        if self.kind == "onnx":
            return f"ONNX ({self.onnx_file.name})"
        return "PEFT adapter" if self.kind == "adapter" else "PyTorch model"


def _not_a_classifier(name_or_path: str, config, command: str) -> ConfigError:
    architectures = ", ".join(getattr(config, "architectures", None) or []) or "none recorded"
    hint = embedding_model_hint(name_or_path)
    advice = (
        f".{hint}"
        if hint
        else f"; {command} needs a model trained on your labels, e.g. the output_dir of hf-transfer train."
    )
    shown = (cache_snapshot(name_or_path) or (name_or_path,))[0]  # a Hub id, not its cache folder
    return ConfigError(f"{shown!r} is not a sequence classifier (architectures: {architectures}){advice}")


def _onnx_file(folder: Path, onnx_file: str | None) -> Path:
    if onnx_file:
        # A graph from elsewhere (`../other/model.onnx`, an absolute path) was run under this folder's labels and
        # tokenizer: another model's outputs written under this one's label names.
        path = folder / onnx_file
        inside = len(Path(onnx_file).parts) == 1 and Path(onnx_file).suffix.lower() == ".onnx"
        if not inside or not path.is_file():
            found = sorted(p.name for p in folder.glob("*.onnx"))
            why = "" if inside else " (a graph from elsewhere would be run with this folder's labels and tokenizer)"
            raise ConfigError(
                f"onnx_file {onnx_file!r} is not a .onnx file in {str(folder)!r}, which holds "
                f"{found or 'no .onnx'}; give the name of one of its graphs{why}."
            )
        return path
    # The int8 graph when the export made one: that is what --quantize int8 was asked for.
    return folder / ONNX_INT8_FILE if (folder / ONNX_INT8_FILE).is_file() else folder / ONNX_FILE


PAIR_COLUMN = PAIR_OPTION  # the run config's field for the second text column


def _recorded(source: InferenceSource | str, field: str) -> dict:
    """`{field: value}` as the model's folder records it (a run folder's resolved config; an ONNX folder's export
    record, else that of the folder it came from, found only from where the export ran), or {} when nothing is
    recorded (a Hub id, a folder from elsewhere). `source` may be a run folder's path."""
    folder = source if isinstance(source, str) else source.name_or_path
    if not isinstance(source, str) and source.kind == "onnx":
        export = onnx_export_record(folder)
        if field in export:
            return {field: export[field]}
        folder = onnx_export_source(folder) or folder
    trained = recorded_config(folder)
    return {field: trained[field]} if field in trained else {}


def trained_pair_column(source: InferenceSource | str) -> dict:
    """`{PAIR_COLUMN: the second text column the model was trained with, or None}` as its folder records it, or {}
    when nothing is recorded (`_recorded`)."""
    return {key: value or None for key, value in _recorded(source, PAIR_COLUMN).items()}


def default_trained_columns(
    source: InferenceSource | str, args, path: str | None, check_as: str | None = None
) -> None:
    """The columns the model was trained with, read from the file `path` where the user set none and the file has
    them (said in one line), as `run_glue.py` reads its task's columns: a pair model's two texts; a text (or label)
    column of another name than the defaults, when the file has no default one (training on `Review Text` and
    scoring the same file failed with "no text column"). `check_as` (the model's name in messages): then the pair
    columns are checked against training (`check_given_pair`): without the second text, `predict` and `evaluate`
    labelled every row from the first alone, silently (and a single-text model takes no second text)."""
    trained, trained_text = trained_pair_column(source), trained_text_column(source)
    pair = trained.get(PAIR_COLUMN)
    columns = file_columns(path, args.csv_quoting) if path else None
    text = args.text_column_name or trained_text
    if (
        columns is not None
        and pair
        and not args.text_pair_column_name
        and pair in columns
        and text in {None, *columns}
        and text != pair  # the pair's column named as the text: the refusal below names both columns
    ):
        args.text_column_name, args.text_pair_column_name = text, pair
        shown = f"columns {text!r} and {pair!r}" if text else f"column {pair!r} as the second text"
        logger.warning(f"the model was trained on text pairs: reading {shown} of {path!r}, as in training.")
    elif columns is not None and not pair:
        _default_trained_column(source, args, columns, "text_column_name", TEXT_COLUMN_CANDIDATES, path)
    if columns is not None and hasattr(args, "label_column_name"):
        _default_trained_column(source, args, columns, "label_column_name", LABEL_COLUMN_CANDIDATES, path)
        trained_label = _recorded(source, "label_column_name").get("label_column_name")
        if getattr(args, "label_mapping", 0) is None and args.label_column_name == trained_label:
            # tried on labels the model does not know, when the file's are the training data's (core.eval_sets)
            args.trained_label_mapping = _recorded(source, "label_mapping").get("label_mapping")
    if check_as is not None:
        check_given_pair(trained, args.text_pair_column_name, check_as, text_column=trained_text)


def _default_trained_column(source, args, columns: set[str], field: str, defaults: tuple, path: str) -> None:
    """`args.<field>` set to the column the model was trained with when it is unset and the file has that column
    (said when the defaults, `defaults` in order, would have read another)."""
    trained = _recorded(source, field).get(field)
    if getattr(args, field) is not None or not trained or trained not in columns:
        return
    setattr(args, field, trained)
    if trained != next((c for c in defaults if c in columns), None):  # `sentence` beside `text`: the trained one
        kind = field.split("_")[0]  # text, label
        logger.warning(f"reading column {trained!r} of {path!r} as the {kind} column, the model's in training.")


def trained_text_column(source: InferenceSource | str) -> str | None:
    """The first text's column the model was trained with, as its folder records it (`_recorded`), or None."""
    return _recorded(source, "text_column_name").get("text_column_name") or None


def check_given_pair(
    trained: dict, given: str | None, model_name: str, role: str = "", text_column: str | None = None
) -> None:
    """ConfigError when `given` (the second text column asked for) contradicts `trained` (`trained_pair_column`);
    `role` goes before the model's name ("teacher "); `text_column`, the first text's column in training, is named
    beside the pair's (given the pair flag alone, the first text's column was the next refusal)."""
    if PAIR_COLUMN not in trained:
        return
    pair = trained[PAIR_COLUMN]
    if pair and not given:
        first = f" --text_column_name {text_column}" if text_column else ""
        raise ConfigError(
            f"{role}{model_name!r} was trained on text pairs (second text column {pair!r}); give the input's second "
            f"text column with --text_pair_column_name (e.g.{first} --text_pair_column_name {pair}, as in training)."
        )
    if not pair and given:
        raise ConfigError(
            f"{role}{model_name!r} was trained on single texts, but text_pair_column_name is {given!r}; drop it."
        )


def check_teacher_texts(teachers: list[str], pair_column: str | None) -> None:
    """Each teacher reads the texts as the data was read (GLUE pair columns are found by name): its own pairs, or
    single texts, as it was trained (a single-text teacher had been given both texts of a GLUE file, silently)."""
    for name in teachers:
        check_given_pair(trained_pair_column(name), pair_column, name, "teacher ", trained_text_column(name))


def resolve_max_seq_length(source: InferenceSource | str, given: int | None) -> int:
    """Inference's truncation length: `given`, else the one the model was trained with (its run folder's resolved
    config; an ONNX folder's export record: `_recorded`), else `DEFAULT_MAX_SEQ_LENGTH`.
    Scoring at another length than training's gave other figures than the run's own evaluation, silently."""
    if given is not None:
        return given
    recorded = _recorded(source, "max_seq_length").get("max_seq_length")
    usable = isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0
    return recorded if usable else DEFAULT_MAX_SEQ_LENGTH


def check_input_length(source: InferenceSource, max_length: int, pair: bool) -> tuple[int, str]:
    """`core.inference.check_vocabulary` and `check_room_for_text` before any weight loads: only the tokenizer is
    read. Returns the length inference truncates at (`max_length`, lowered to what the model can embed) and what
    limits it (`max_length_limit`)."""
    tokenizer = load_tokenizer(source.tokenizer_source)
    check_vocabulary(source.config, tokenizer)
    usable, limit = max_length_limit([(source.config, tokenizer)], max_length)
    check_room_for_text(tokenizer, usable, pair)
    return usable, limit


def resolve_inference_model(
    name_or_path: str,
    base_model_name_or_path: str | None = None,
    *,
    onnx_file: str | None = None,
    command: str = "evaluate",
    revision: str = "main",
) -> InferenceSource:
    """The classifier `name_or_path` names, from its config alone (no weights are read). Raises ConfigError for a
    path or id that does not work, a model without a trained classification head, or options that do not apply.
    A Hub id is read from its snapshot folder (`hub_snapshot_folder`): an adapter, an ONNX export and the records of
    the run that made it work by id as by path (by id, the run's max_seq_length and pair column were unknown)."""
    if revision != "main" and Path(name_or_path).expanduser().exists():
        raise ConfigError(f"model_revision {revision!r} is for a Hub id, and {name_or_path!r} is a local folder.")
    name_or_path = hub_snapshot_folder(name_or_path, revision)
    folder = Path(name_or_path)
    adapter, onnx = is_adapter_folder(folder), is_onnx_folder(folder)
    if base_model_name_or_path and not adapter:
        raise ConfigError(
            f"base_model_name_or_path is only for adapter folders, and {name_or_path!r} holds no adapter_config.json."
        )
    if onnx_file and not onnx:
        raise ConfigError(
            f"onnx_file is only for folders written by hf-transfer export, and {name_or_path!r} holds no .onnx graph."
        )
    if adapter:
        config = adapter_base_config(folder, base_model_name_or_path, command)
        # PEFT loads an adapter onto a base of another depth with a warning, and the scores are another model's.
        saved = read_json_file(folder / ADAPTER_CONFIG, "adapter config")
        check_adapter_fits(
            str(folder), saved, meta_classifier(config), config._name_or_path, "the base", "loaded onto"
        )
        tokenizer = name_or_path if has_tokenizer(folder) else config._name_or_path
        return InferenceSource(name_or_path, "adapter", config, tokenizer)
    config = load_config(name_or_path, revision=revision)  # an id not resolved above: the line says why
    if not is_sequence_classifier(config):
        raise _not_a_classifier(name_or_path, config, command)
    check_not_regression(config, name_or_path, command)
    if onnx:
        check_installed(f"hf-transfer {command} on an ONNX folder", "export", "onnxruntime")
        if not has_tokenizer(folder):
            raise ConfigError(f"ONNX folder {name_or_path!r} holds no tokenizer; run hf-transfer export again.")
        return InferenceSource(name_or_path, "onnx", config, name_or_path, _onnx_file(folder, onnx_file))
    check_weights_complete(name_or_path)  # a truncated checkpoint is refused before the data is read
    return InferenceSource(name_or_path, "model", config, name_or_path)


def load_inference_model(source: InferenceSource, on_gpu: bool = False):
    """(model, tokenizer) for `source`: a PyTorch classifier in eval mode (with `on_gpu`, on the first CUDA device
    when there is one, where `pipeline()` users put it; fp32 either way), or an `OnnxClassifier`."""
    tokenizer = load_tokenizer(source.tokenizer_source)
    if source.kind == "onnx":
        from hf_transfer.core.onnx_model import OnnxClassifier

        return OnnxClassifier(source.onnx_file, source.config), tokenizer
    if source.kind == "adapter":
        model = load_adapter_for_inference(Path(source.name_or_path), source.config)
    else:
        model = load_classifier(source.name_or_path, source.config).eval()
    import torch

    if on_gpu and torch.cuda.is_available():
        model = model.to("cuda")
    return align_pad_token(model, tokenizer), tokenizer
