"""`hf-transfer evaluate`: score a classifier (a model folder, a Hub id or an adapter folder) on a labelled file and on
any number of extra sets, every set read and label-aligned before the model loads."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.adapters.peft_model import adapter_base_config, load_adapter_for_inference
from hf_transfer.core.eval_sets import prepare_eval_sets, reports_markdown, scalars, score_set
from hf_transfer.core.folders import ADAPTER_CONFIG, has_tokenizer
from hf_transfer.core.models import is_sequence_classifier, load_classifier, load_config, load_tokenizer
from hf_transfer.errors import ConfigError
from hf_transfer.evaluation.arguments import EvaluateArguments
from hf_transfer.outputs.plots import write_confusion_matrices
from hf_transfer.outputs.run_folder import write_json


def run_evaluate(args: EvaluateArguments) -> dict:
    """Score the model on validation_file and every extra_eval set; every set is read before the model is loaded."""

    folder = Path(args.model_name_or_path)
    adapter = (folder / ADAPTER_CONFIG).is_file()
    if args.base_model_name_or_path and not adapter:
        raise ConfigError(
            f"base_model_name_or_path is only for adapter folders, and {args.model_name_or_path!r} holds no "
            "adapter_config.json."
        )
    if adapter:
        config = adapter_base_config(folder, args.base_model_name_or_path)
    else:
        config = load_config(args.model_name_or_path)
        if not is_sequence_classifier(config):
            raise ConfigError(
                f"{args.model_name_or_path!r} is not a sequence classifier (architectures: "
                f"{', '.join(getattr(config, 'architectures', None) or []) or 'none recorded'}); evaluate a model "
                "trained on your labels, e.g. the output_dir of hf-transfer train."
            )
    model_names = [config.id2label[i] for i in range(config.num_labels)]
    sets = prepare_eval_sets(args, model_names)
    tokenizer = load_tokenizer(args.model_name_or_path if has_tokenizer(folder) else config._name_or_path)
    model = load_adapter_for_inference(folder, config) if adapter else load_classifier(args.model_name_or_path, config)
    reports = {data.name: score_set(model, tokenizer, data, model_names, args) for data in sets}
    main = reports[args.validation_name]
    table = reports_markdown(reports, model_names)
    if args.output_file:
        out = Path(args.output_file)
        # The main set's report stays at the top level, as before extra sets existed; every set is under `sets`.
        write_json(out, {**main, "sets": reports} if len(reports) > 1 else main)
        out.with_suffix(".md").write_text(table)
        titles = {data.name: f"{data.name}: {Path(data.path).name}" for data in sets}
        titles[args.validation_name] = Path(args.validation_file).name
        write_confusion_matrices(reports, model_names, out, args.validation_name, titles)
    result = scalars(main)
    for name, report in list(reports.items())[1:]:
        result.update({f"{name}_accuracy": report["accuracy"], f"{name}_f1_macro": report["f1_macro"]})
    if len(reports) > 1:
        result["table"] = table
    return result
