"""What to write instead of a field that `run_glue.py`, or `TrainingArguments` before transformers 5, took and the
commands do not: a near name alone misled (`logging_dir` → "Did you mean 'logging_first_step'?"); what to say of a
value given wrongly, or not at all."""

from __future__ import annotations

import itertools
import re

# A token argparse rightly reads as the next flag: after it, the value was simply left out.
_FLAG = re.compile(r"--[A-Za-z_][\w-]*(=.*)?", re.DOTALL)

# The keys of an `accelerate config` file (`default_config.yaml`) that are no field of ours, given as `--config`.
ACCELERATE_KEYS = frozenset(
    {"compute_environment", "distributed_type", "num_processes", "num_machines", "machine_rank", "mixed_precision",
     "main_training_function", "downcast_bf16", "gpu_ids", "rdzv_backend", "same_network", "tpu_env",
     "tpu_use_cluster", "tpu_use_sudo", "main_process_ip", "main_process_port", "dynamo_config", "enable_cpu_affinity",
     "deepspeed_config", "megatron_lm_config", "fp8_config", "ipex_config", "mpirun_config"}
)  # fmt: skip

# field -> (the field the note sends the user to: the note is given only by a command that has it, the note)
FIELD_NOTES = {
    "warmup_ratio": ("warmup_steps", "In transformers 5 it is part of warmup_steps: a value below 1 is read as a "
                     "fraction of the training steps, e.g. --warmup_steps 0.1."),
    "logging_dir": ("report_to", "transformers 5 removed it: TensorBoard logs go to output_dir/runs/, or to the "
                    "folder the TENSORBOARD_LOGGING_DIR environment variable names."),
    "evaluation_strategy": ("eval_strategy", "transformers renamed it eval_strategy."),
    "no_cuda": ("use_cpu", "transformers renamed it use_cpu."),
    "per_gpu_train_batch_size": ("per_device_train_batch_size",
                                 "transformers renamed it per_device_train_batch_size."),
    "per_gpu_eval_batch_size": ("per_device_eval_batch_size", "transformers renamed it per_device_eval_batch_size."),
    "include_inputs_for_metrics": ("include_for_metrics", "transformers replaced it with include_for_metrics."),
    "pad_to_max_length": ("max_seq_length", "Not needed: each batch is padded to its longest row, and max_seq_length "
                          "caps the length."),
    "task_name": ("train_file", "hf-transfer reads files or a Hub dataset, not GLUE task names: give train_file and "
                  "validation_file, or dataset_name glue with dataset_config_name (e.g. sst2)."),
    "text_column_names": ("text_pair_column_name", "The first text is text_column_name and a second one (a text "
                          "pair) text_pair_column_name, e.g. --text_column_name sentence1 --text_pair_column_name "
                          "sentence2."),
    "torch_dtype": ("bf16", "Weights load and are saved in fp32, which the optimizer needs; --bf16 true (or --fp16 "
                    "true on a GPU) trains in mixed precision."),
    "dtype": ("bf16", "Weights load and are saved in fp32, which the optimizer needs; --bf16 true (or --fp16 true on "
              "a GPU) trains in mixed precision."),
}  # fmt: skip


# Help of TrainingArguments fields whose transformers text is wrong for these commands (field -> the text shown).
HELP_TEXTS = {
    "do_train": "Always true: the command trains. false is refused.",
    "do_eval": "Always true: the validation data is scored once at the end (eval_strategy sets evaluations during "
               "training). false is refused.",
    "do_predict": "true with a test_file, which is then scored (or, without labels, predicted into "
                  "predict_results.csv); it must agree with test_file.",
    "resume_from_checkpoint": "A checkpoint-N folder to go on from, or true: the newest complete one in output_dir.",
    "prediction_loss_only": "Not supported (refused): the run's metrics are computed from the predictions.",
    "label_names": "Not supported (refused): the label column is label_column_name; the model reads it as `labels`.",
    "batch_eval_metrics": "Not supported (refused): the metrics are computed over the whole evaluation set at once.",
}  # fmt: skip
# Added to a field's help (field -> the sentence added).
HELP_ADDITIONS = {
    "learning_rate": " With peft_method lora or adalora and no learning_rate given: 2e-3 (the run says so).",
}
# Fields of the arguments train and distill share that only train uses (distill refuses or ignores them).
TRAIN_ONLY_PREFIXES = ("few_shot", "linear_probe_", "cache_frozen_features", "frozen_features_")


def field_help(command: str, name: str, text: str | None) -> str:
    """The help `command --help` shows for field `name`, whose dataclass help is `text`."""
    text = HELP_TEXTS.get(name, text or "") + HELP_ADDITIONS.get(name, "")
    return f"(hf-transfer train only.) {text}" if command == "distill" and name.startswith(
        TRAIN_ONLY_PREFIXES) else text  # fmt: skip


def field_note(name: str, fields, command: str) -> str | None:
    """The note on `name` for a command whose fields are `fields`; for a command without the field the note names
    (`evaluate` trains nothing), the way to its own fields, not a near name ('evaluation_strategy' was "Did you mean
    'validation_name'?"); None for other names."""
    target, note = FIELD_NOTES.get(name, (None, None))
    if note is None:
        return None
    return f" {note}" if target in fields else f" Run `hf-transfer {command} --help` for the fields it takes."


# field -> what to do when it is given a list, where it takes one column's name
LIST_NOTES = {
    "label_column_name": " One 0/1 column per label is not read: for multi-label data write each row's labels as a "
    'list in one column (["toxic", "insult"], a JSON list string in csv/tsv).',
    "text_column_name": " Give one text column, and a second text's with text_pair_column_name.",
}


def value_note(name: str, value) -> str:
    """What to write instead of `value` for field `name`, after the parser's "expects ..., got ..." ('' if none)."""
    return LIST_NOTES.get(name, "") if isinstance(value, list) else ""


def missing_value(flag: str, argv: list[str]) -> str:
    """The error for `flag` given without a value. argparse reads a value that begins with '-' (`-bad/x`) as a flag
    of its own, so when the token after `flag` is shaped like no flag, say how to pass it: `--flag=-bad/x`."""
    name = flag[2:].replace("-", "_")
    for token, after in itertools.pairwise(argv):
        if token[2:].replace("-", "_") == name and token.startswith("--") and not _FLAG.fullmatch(after):
            return f"{flag} needs a value, and {after!r} after it was read as a flag; give it as {flag}={after}."
    return f"{flag} needs a value: fields are given as --name value (or --name=value for a value beginning with '-')."
