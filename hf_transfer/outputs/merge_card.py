"""The card of a folder written by `hf-transfer merge`: the fine-tuned run's facts (when hf-transfer made it), the
interpolation (and the earlier merge, when the fine-tuned end is itself one), and the merged model's own evaluation."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.run_records import is_hub_id
from hf_transfer.outputs.card_data import CardData, _language, _scalar_metrics, _versions, load_card_data
from hf_transfer.outputs.provenance import base_model_facts

# What a merge card keeps of an earlier merge that is its fine-tuned end (and of that one's own earlier merge).
MERGE_CHAIN_KEYS = ("alpha", "pretrained", "finetuned", "finetuned_kind", "head_init", "finetuned_merge")
# What merge writes of the chosen α's scores: the card links the validation set's confusion matrix picture under its
# table (`merge_eval.confusion_matrix.png`, named by `plots.confusion_paths`).
EVAL_JSON, EVAL_MD = "merge_eval.json", "merge_eval.md"
SWEEP_JSON = "merge_sweep.json"  # the sweep, with the file of each set it scored


def merge_card_data(record: dict, config: dict, folder: str | Path, sets: list) -> CardData:
    """Card data of an interpolated model (`hf-transfer merge`): the fine-tuned run's facts (its data, freeze plan,
    hyperparameters) when hf-transfer made it, the interpolation, and the merged model's own evaluation; the
    fine-tuned model's metrics and per-epoch rows are dropped, since they describe another model."""
    m = record["merge"]
    inherited = load_card_data(m["finetuned"]) if Path(str(m["finetuned"])).is_dir() else None
    c = inherited or CardData()
    c.model_name = Path(folder).resolve().name
    c.repo_id = c.local_path = None  # a folder of its own, named by model_name
    c.task = "merge"
    c.base_model = record.get("base_model")
    c.base_model_is_hub_id = is_hub_id(c.base_model)
    c.base_model_revision = m.get("pretrained_revision")
    if not inherited:
        facts = base_model_facts([config.get("base_model_hub_id"), config.get("pretrained"), c.base_model])
        c.license = facts.get("license")
        c.language, c.language_source = _language(None, facts)
        c.data_source = "not recorded: the fine-tuned model was not trained with hf-transfer"
    c.label_names = list(record.get("label_names") or [])
    c.problem_type = record.get("problem_type") or c.problem_type
    earlier = inherited.merge if inherited else None  # the fine-tuned end is itself a merge: say so, not "fine-tuned"
    c.merge = {**m, "finetuned_merge": {k: earlier.get(k) for k in MERGE_CHAIN_KEYS}} if earlier else m
    c.max_seq_length = config.get("max_seq_length")
    reports = record.get("eval_sets") or {}
    main = reports.get(m.get("validation_set")) or {}
    c.metrics = _scalar_metrics(main)
    c.test_metrics, c.epochs = {}, []
    c.confusion_matrix = main.get("confusion_matrix")
    # Measured on merge's own files, whatever data the fine-tuned model was trained on.
    c.eval_hub_dataset, c.eval_files = None, {"validation": Path(sets[0].path).name} if main else {}
    if main:
        first = sets[0]
        c.eval_dataset = f"{main['samples']:,} rows of {first.name} (`{Path(first.path).name}`) at α = {m['alpha']:g}"
        if len(sets) > 1:
            others = ", ".join(f"{s.name} ({reports[s.name]['samples']:,} rows)" for s in sets[1:])
            c.eval_dataset += f", and on {others} (see the α sweep)"
    else:
        c.eval_dataset = "no data: hf-transfer merge ran without a validation file"
    c.versions = _versions()
    c.hf_transfer_version = record.get("hf_transfer_version")
    return c
