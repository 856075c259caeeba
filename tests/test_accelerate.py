"""Under `accelerate launch`: real 2-process DDP on CPU (gloo) matches one process with the same global batch, for
`train` and `distill`, and leaves exactly one set of outputs; the shipped accelerate configs parse."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from hf_transfer.cli import main

REPO = Path(__file__).resolve().parent.parent
ACCELERATE_CONFIGS = sorted((REPO / "scripts" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("config", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_shipped_accelerate_configs_parse(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    assert loaded.num_processes >= 1 and loaded.compute_environment.value == "LOCAL_MACHINE"
    if "ddp" in config.name:
        assert loaded.distributed_type.value == "MULTI_GPU" and loaded.num_processes == 2


def test_accelerate_config_names_cover_every_engine():
    names = {p.stem for p in ACCELERATE_CONFIGS}
    assert {"single_process", "ddp_cpu", "fsdp", "deepspeed_zero2", "deepspeed_zero3"} <= names


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert_dir):
    """Tiny data, a dropout-free tiny BERT (so runs are comparable), and a tiny fine-tuned teacher."""
    import pandas as pd
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    root = tmp_path_factory.mktemp("ddp")
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(72)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(72)]
    pd.DataFrame({"text": texts[:64], "label": labels[:64]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"text": texts[64:], "label": labels[64:]}).to_csv(root / "dev.csv", index=False)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for name, layers, seed, width in (("student", 2, 0, 32), ("teacher", 3, 1, 32), ("narrow", 2, 2, 16)):
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            num_hidden_layers=layers,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            id2label={0: "pos", 1: "neg"},
            label2id={"pos": 0, "neg": 1},
        )
        BertForSequenceClassification(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def run_args(root, out, command, batch):
    args = [
        command,
        "--train_file",
        str(root / "train.csv"),
        "--validation_file",
        str(root / "dev.csv"),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        str(batch),
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        "--seed",
        "7",
    ]
    if command == "train":
        return [*args, "--model_name_or_path", str(root / "student")]
    return [
        *args,
        "--teacher_model_name_or_path",
        str(root / "teacher"),
        "--student_layers",
        "[0, 2]",
        "--alpha",
        "0.7",
        "--teacher_cache_dir",
        str(root / "cache"),
    ]


def launch_two_processes(argv, **env_vars):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env_vars}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    command = [
        accelerate,
        "launch",
        "--config_file",
        str(REPO / "scripts" / "accelerate" / "ddp_cpu.yaml"),
        "--main_process_port",
        "0",
        "-m",
        "hf_transfer",
        *argv,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def losses(out, key="loss"):
    state = json.loads((out / "trainer_state.json").read_text())
    return [e[key] for e in state["log_history"] if key in e]


def same_facts(a, b) -> bool:
    """Equal records, floats within 1e-4 (DDP sums in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_facts(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-4, abs=1e-4)
    return a == b


@pytest.mark.parametrize("command", ["train", "distill"])
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(command, setup, tmp_path, capsys):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main(run_args(setup, single, command, batch=8) + ["--use_cpu", "true"]) == 0
    launch_two_processes(run_args(setup, ddp, command, batch=4))

    record = json.loads((ddp / "hf_transfer_run.json").read_text())
    assert record["world_size"] == 2
    # 2 processes × batch 4 and 1 process × batch 8: the same rows per optimizer step, and the record says so.
    assert record["effective_train_batch_size"] == 8
    assert json.loads((single / "hf_transfer_run.json").read_text())["effective_train_batch_size"] == 8
    # One set of outputs: the same files as the single-process run, written once.
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-4, abs=1e-5)
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst
    if command == "distill":
        # The online teacher was prepared for evaluation only: never wrapped in DistributedDataParallel.
        assert record["distillation"]["prepared_teacher_classes"] == ["BertForSequenceClassification"]
        # The logged loss terms are over every process's rows: they were the main process's alone.
        for term in ("loss_kd", "loss_ce"):
            assert len(losses(ddp, term)) == 16
            assert losses(ddp, term) == pytest.approx(losses(single, term), abs=2e-4), term


@pytest.mark.parametrize(
    "extra",
    [
        ["--class_weights", "{pos: 3.0, neg: 1.0}"],
        ["--linear_probe_epochs", "1"],
        ["--freeze_layers", "1", "--freeze_embeddings", "true", "--cache_frozen_features", "true"],
        ["--peft_method", "lora"],
        ["--calibrate_decision", "macro_f1", "--calibration_split_percentage", "25"],
        [
            "--eval_strategy",
            "epoch",
            "--save_strategy",
            "epoch",
            "--load_best_model_at_end",
            "true",
            "--metric_for_best_model",
            "loss",
            "--early_stopping_patience",
            "1",
        ],
    ],
    ids=["class-weights", "lp-ft", "frozen-feature-cache", "lora", "calibration", "best-checkpoint"],
)
def test_two_process_ddp_matches_one_process_with_each_training_option(extra, setup, tmp_path):
    """Class weights, the linear probe, the frozen-trunk cache, LoRA, decision calibration and the best checkpoint
    kept by early stopping each give the single-process run's losses, weights and record under 2-process DDP with
    the same global batch."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    cached = "--cache_frozen_features" in extra or "--linear_probe_epochs" in extra  # the trunk's cache: each run
    own = (lambda name: ["--frozen_features_cache_dir", str(tmp_path / name)]) if cached else (lambda name: [])
    assert main([*run_args(setup, single, "train", batch=8), "--use_cpu", "true", *extra, *own("c1")]) == 0
    launch_two_processes([*run_args(setup, ddp, "train", batch=4), *extra, *own("c2")])  # builds its own
    record, alone = (json.loads((out / "hf_transfer_run.json").read_text()) for out in (ddp, single))
    assert record["world_size"] == 2
    if cached:  # the DDP run built the cache itself, where it had read the one-process run's
        for facts in (record, alone):
            cache = facts.get("frozen_features") or facts["linear_probe"]["feature_cache"]
            assert cache["hit"] is False and cache["path"].startswith(str(tmp_path)), cache
    for section in ("calibration", "best_model", "early_stopping"):  # the offsets fitted, the checkpoint kept
        assert same_facts(record.get(section), alone.get(section)), (section, record.get(section), alone.get(section))
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-4, abs=1e-5)
    weights = "adapter_model.safetensors" if "lora" in extra else "model.safetensors"
    a, b = load_file(str(single / weights)), load_file(str(ddp / weights))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_two_process_ddp_distill_with_the_logit_cache_unlabeled_rows_and_hidden_loss(setup, tmp_path):
    unlabeled = tmp_path / "unlabeled.csv"
    pd.DataFrame({"text": [f"more {'good' if i % 2 else 'bad'} words {i}" for i in range(32)]}).to_csv(
        unlabeled, index=False
    )
    extra = ["--cache_teacher_logits", "true", "--unlabeled_file", str(unlabeled), "--hidden_loss_weight", "1.0"]
    extra += ["--hidden_loss_pooling", "mean"]  # one vector per row: what the cache holds
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main([*run_args(setup, single, "distill", batch=8), "--use_cpu", "true", *extra]) == 0
    launch_two_processes([*run_args(setup, ddp, "distill", batch=4), *extra])
    assert len(losses(ddp)) == 24  # (64 labelled + 32 unlabeled rows) / 8, twice
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-4, abs=1e-5)
    for term in ("loss_kd", "loss_ce", "loss_hidden"):
        assert losses(ddp, term) == pytest.approx(losses(single, term), abs=2e-4), term
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


@pytest.mark.parametrize(
    "command, extra",
    [
        ("train", []),
        ("train", ["--class_weights", "balanced", "--gradient_accumulation_steps", "2"]),
        ("distill", ["--hidden_loss_weight", "1.0"]),
    ],
    ids=["train", "class-weights-accumulation", "distill-hidden-loss"],
)
def test_two_process_ddp_matches_one_process_when_the_rows_are_no_multiple_of_the_global_batch(
    command, extra, setup, tmp_path
):
    """61 rows at a global batch of 8: accelerate fills the last batch of one process with rows from the start of
    the epoch, and those rows counted twice in that step's loss, KD and hidden terms and normaliser (the logged loss
    0.6932 against 0.6952, the weights 8e-5 apart). They now count once, as in one process."""
    pd.read_csv(setup / "train.csv").iloc[:61].to_csv(tmp_path / "train61.csv", index=False)
    single, ddp = tmp_path / "single", tmp_path / "ddp"

    def argv(out, batch, *more):
        args = run_args(setup, out, command, batch=batch)
        args[args.index("--train_file") + 1] = str(tmp_path / "train61.csv")
        if command == "distill":
            args[args.index("--teacher_cache_dir") + 1] = str(tmp_path / "cache")
        return [*args, *more]

    # 1 process × batch 8 against 2 processes × batch 4 (or × batch 2, accumulated twice)
    accumulated = "--gradient_accumulation_steps" in extra
    alone = [e for e in extra if e not in ("--gradient_accumulation_steps", "2")]
    assert main([*argv(single, 8, *alone), "--use_cpu", "true"]) == 0
    launch_two_processes(argv(ddp, 2 if accumulated else 4, *extra))
    assert losses(ddp) == pytest.approx(losses(single), rel=1e-5, abs=1e-6)
    for term in ("loss_kd", "loss_ce", "loss_hidden") if command == "distill" else ():
        assert losses(ddp, term) == pytest.approx(losses(single, term), abs=1e-5), term
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_two_process_ddp_trains_the_hidden_state_projections_on_every_processs_rows(setup, tmp_path):
    """A student narrower than its teacher matches hidden states through projections that are no part of the DDP
    model: each process trained its own copy on its own rows (their gradients were never averaged), so the student,
    whose gradient goes through them, drifted from the one-process run."""
    student = ["--model_name_or_path", str(setup / "narrow"), "--hidden_loss_weight", "1.0"]
    student += ["--layer_map", "[1, 2]"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    argv = lambda out, batch: [a for a in run_args(setup, out, "distill", batch) if a != "[0, 2]"]  # noqa: E731
    strip = lambda args: [a for a in args if a != "--student_layers"]  # noqa: E731
    assert main([*strip(argv(single, 8)), *student, "--use_cpu", "true"]) == 0
    launch_two_processes([*strip(argv(ddp, 4)), *student])
    facts = json.loads((ddp / "hf_transfer_run.json").read_text())["distillation"]
    assert facts["hidden_projections"] == {"student_blocks": [0, 1], "from": 16, "to": 32}
    assert "through learned 16→32 projections" in (ddp / "README.md").read_text()
    assert losses(ddp, "loss_hidden") == pytest.approx(losses(single, "loss_hidden"), abs=2e-4)
    a, b = load_file(str(single / "model.safetensors")), load_file(str(ddp / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_two_process_ddp_evaluation_loss_counts_each_row_once(setup, tmp_path):
    """A validation set of 13 rows and a test set of 11, class-weighted, evaluated each epoch: under 2 processes the
    last batch of each process is filled with rows from the start of the set, and its mean loss (over a global
    normaliser) counted them: eval_loss 0.6841 against 0.6883 for 7 rows, and every class-weighted epoch's eval
    loss differed. Each process's loss is now its own real rows' weighted mean, as one process computes it."""
    rows = pd.read_csv(setup / "train.csv")
    rows.iloc[:13].to_csv(tmp_path / "dev13.csv", index=False)
    rows.iloc[20:31].to_csv(tmp_path / "test11.csv", index=False)
    extra = ["--validation_file", str(tmp_path / "dev13.csv"), "--test_file", str(tmp_path / "test11.csv")]
    extra += ["--eval_strategy", "epoch", "--class_weights", "{pos: 3.0, neg: 1.0}"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    assert main([*run_args(setup, single, "train", batch=8), "--use_cpu", "true", *extra]) == 0
    launch_two_processes([*run_args(setup, ddp, "train", batch=4), *extra])
    assert len(losses(ddp, "eval_loss")) == 2  # one an epoch
    assert losses(ddp, "eval_loss") == pytest.approx(losses(single, "eval_loss"), rel=1e-4, abs=1e-5)
    record, alone = (json.loads((out / "hf_transfer_run.json").read_text()) for out in (ddp, single))
    for key in ("eval_loss", "eval_accuracy"):
        assert record["eval_metrics"][key] == pytest.approx(alone["eval_metrics"][key], rel=1e-4, abs=1e-5), key
    for key in ("test_loss", "test_accuracy"):
        assert record["test_metrics"][key] == pytest.approx(alone["test_metrics"][key], rel=1e-4, abs=1e-5), key
    assert record["eval_metrics"]["eval_samples"] == 13
    confusion = json.loads((ddp / "confusion_matrix.json").read_text())
    assert confusion == json.loads((single / "confusion_matrix.json").read_text())


def test_two_process_ddp_train_loss_is_over_every_processs_rows(setup, tmp_path):
    """With no log in the last logging_steps window (here none at all), Trainer's train_loss added those steps'
    losses from the main process's rows alone: 2 processes reported another train_loss than one process with the
    same global batch (train_results.json, the record, the log's final entry). It is now the mean over processes."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    quiet = ["--logging_steps", "500"]
    assert main([*run_args(setup, single, "train", batch=8), "--use_cpu", "true", *quiet]) == 0
    proc = launch_two_processes([*run_args(setup, ddp, "train", batch=4), *quiet])
    assert not losses(ddp)  # nothing logged during the run
    # Trainer's own end-of-training line, printed before the results block, gives the same figure (it was the main
    # process's alone: 1.036 where the saved files and the hand value say 1.0987).
    printed = re.findall(r"'train_loss': '?([0-9.]+)", proc.stdout + proc.stderr)
    saved = json.loads((ddp / "train_results.json").read_text())["train_loss"]
    assert len(printed) == 1 and float(printed[0]) == pytest.approx(saved, abs=5e-4)
    alone = json.loads((single / "train_results.json").read_text())["train_loss"]
    assert json.loads((ddp / "train_results.json").read_text())["train_loss"] == pytest.approx(alone, rel=1e-4)
    assert losses(ddp, "train_loss") == pytest.approx(losses(single, "train_loss"), rel=1e-4)


def test_two_process_ddp_distill_with_fresh_augmented_rows_runs_the_teacher_once(setup, tmp_path):
    """The main process builds the augmented rows and the teacher-logit cache; the other reads both back. Its
    tokenizer, never called to augment, once gave another cache key: it ran the teacher pass again, into a second
    cache folder."""
    out, cache = tmp_path / "ddp", tmp_path / "cache"
    extra = ["--cache_teacher_logits", "true", "--augment_factor", "1", "--teacher_cache_dir", str(cache)]
    launch_two_processes([*run_args(setup, out, "distill", batch=4), *extra], HF_HOME=str(tmp_path / "home"))
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert record["transfer_set"]["augmentation"]["hit"] is False and record["transfer_set"]["augmented"] > 0
    assert [p.name for p in cache.iterdir()] == [record["teacher_logit_cache"][0]["key"]]


def test_two_process_ddp_train_says_it_passed_the_few_shot_route_over(setup, tmp_path, tiny_bert_dir):
    """16 rows on a sentence-transformers base: one process takes the few-shot route (`few_shot: auto`); two cannot
    (its pair loss runs in one process) and ran the ordinary fine-tune, silently, with nothing in the output or the
    run record to say the same command had trained otherwise."""
    from test_few_shot import BAD, GOOD, make_sentence_transformer, write_csv

    base = make_sentence_transformer(tmp_path / "st", tiny_bert_dir)
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    out = tmp_path / "ddp"
    argv = ["train", "--model_name_or_path", str(base), "--train_file", str(train), "--output_dir", str(out)]
    argv += ["--num_train_epochs", "1", "--per_device_train_batch_size", "4", "--save_strategy", "no"]
    proc = launch_two_processes([*argv, "--report_to", "none", "--disable_tqdm", "true"])
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert "few_shot" not in record and record["world_size"] == 2
    passed_over = record["few_shot_passed_over"]
    assert passed_over.startswith("off (auto: 8 rows per class, but several processes were launched")
    assert f"few-shot route {passed_over}; the ordinary fine-tune runs." in proc.stderr
    card = (out / "README.md").read_text()  # the card says so too: it is what a reader of the model sees
    assert "### Few-shot route" in card
    assert f"| route passed over | {passed_over}; the ordinary fine-tune ran |" in card


# --- kill, then resume -----------------------------------------------------------------------------------------

KILLER = """
import os, signal, sys
from transformers import TrainerCallback
import hf_transfer.train.trainer as trainers

class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)

original = trainers.TransferTrainer.__init__

def init(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.add_callback(KillAt())

trainers.TransferTrainer.__init__ = init
from hf_transfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", ["train", "distill"])
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(command, setup, tmp_path):
    extra = ["--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "epoch"]
    if command == "distill":
        extra += ["--cache_teacher_logits", "true"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main([*run_args(setup, whole, command, batch=4), *extra]) == 0

    # 64 rows at batch 4: 16 steps an epoch. Killed at step 7, mid-epoch 1, after the checkpoint of step 6.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER.format(step=7), *run_args(setup, killed, command, batch=4), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (killed / "model.safetensors").exists() and (killed / "checkpoint-6").is_dir()
    assert main([*run_args(setup, killed, command, batch=4), *extra, "--resume_from_checkpoint", "true"]) == 0

    a, b = load_file(str(whole / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    for name in a:
        assert torch.equal(a[name], b[name]), name
    metrics_a = json.loads((whole / "eval_results.json").read_text())
    metrics_b = json.loads((killed / "eval_results.json").read_text())
    assert {k: v for k, v in metrics_a.items() if "runtime" not in k and "per_second" not in k} == {
        k: v for k, v in metrics_b.items() if "runtime" not in k and "per_second" not in k
    }
    # The written config is a fresh run's recipe: a rerun from it elsewhere went on from this run's checkpoint-6.
    assert yaml.safe_load((killed / "hf_transfer_config.yaml").read_text())["resume_from_checkpoint"] is None
    assert json.loads((killed / "hf_transfer_run.json").read_text())["resumed_from"]["checkpoint"] == "checkpoint-6"


def test_evaluation_changes_no_training_and_a_resume_before_an_epoch_end_evaluation_is_exact(setup, tmp_path):
    """With dropout on, an evaluation (whose data loader draws a seed from torch's random state) used to shift the
    dropout masks of every later step: a run that evaluated each epoch ended with other weights than one that did not,
    and a run resumed from the step checkpoint at the end of epoch 1 (saved before that epoch's evaluation) ended
    with other weights than the uninterrupted run (3e-3 here)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(setup / "student")
    torch.manual_seed(0)
    config = BertConfig.from_pretrained(setup / "student", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = tmp_path / "dropout-model"
    BertForSequenceClassification(config).save_pretrained(model)
    tokenizer.save_pretrained(model)
    extra = ["--model_name_or_path", str(model), "--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "8"]
    runs = {}
    for name, evaluate in (("quiet", "no"), ("whole", "epoch")):
        runs[name] = tmp_path / name
        assert main([*run_args(setup, runs[name], "train", batch=4), *extra, "--eval_strategy", evaluate]) == 0
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(runs["whole"] / "checkpoint-16", resumed / "checkpoint-16")  # 16 steps an epoch: epoch 1's end
    argv = [*run_args(setup, resumed, "train", batch=4), *extra, "--eval_strategy", "epoch"]
    assert main([*argv, "--resume_from_checkpoint", str(resumed / "checkpoint-16")]) == 0

    whole = load_file(str(runs["whole"] / "model.safetensors"))
    for other in (runs["quiet"], resumed):
        weights = load_file(str(other / "model.safetensors"))
        for name in whole:
            assert torch.equal(whole[name], weights[name]), (other.name, name)
    start = load_file(str(model / "model.safetensors"))
    assert not torch.equal(whole["classifier.weight"], start["classifier.weight"])  # it did train


def test_resume_skips_a_checkpoint_cut_off_mid_save(setup, tmp_path, capsys):
    from hf_transfer.errors import ConfigError
    from hf_transfer.outputs.checkpoints import complete_checkpoints
    from hf_transfer.outputs.run_folder import resolve_resume_checkpoint

    out = tmp_path / "run"
    args = [*run_args(setup, out, "train", batch=8), "--use_cpu", "true", "--save_strategy", "steps"]
    assert main([*args, "--save_steps", "4"]) == 0
    newest = out / "checkpoint-16"
    (newest / "trainer_state.json").write_text('{"global_step": 1')  # a save killed while writing its last file
    assert [p.name for p in complete_checkpoints(out)] == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]

    class Args:
        output_dir = str(out)
        resume_from_checkpoint = "true"

    resolve_resume_checkpoint(Args)
    assert Args.resume_from_checkpoint == str(out / "checkpoint-12")
    Args.resume_from_checkpoint = str(newest)
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(Args)
    capsys.readouterr()
    assert main([*run_args(setup, tmp_path / "fresh", "train", batch=8), "--resume_from_checkpoint", "true"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["train", "--train_file", "missing.csv"], ["trian"]], ids=["refusal", "command"])
def test_two_process_refusal_is_one_line_from_the_main_process_and_status_2_on_every_rank(argv, setup, tmp_path):
    """Bad input under `accelerate launch` with 2 processes: each process printed the same one-line refusal (two
    identical lines). The main process prints it once now; every process still exits with status 2, and nothing is
    written."""
    out = tmp_path / "out"
    if argv[0] == "train":
        argv = [*argv, "--model_name_or_path", str(setup / "student"), "--output_dir", str(out)]
        argv += ["--report_to", "none"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    config = str(REPO / "scripts" / "accelerate" / "ddp_cpu.yaml")
    command = [accelerate, "launch", "--config_file", config, "--main_process_port", "0", "-m", "hf_transfer", *argv]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hf-transfer")]
    assert len(errors) == 1 and ": error: " in errors[0], proc.stderr[-3000:]
    assert "missing.csv" in errors[0] or "unknown command 'trian'" in errors[0]
    # torchrun's agent stops the other rank (SIGTERM) once one has failed, so a rank that had not yet exited by
    # itself is listed as -15: every listed rank exited 2 or was stopped, and at least one exited 2.
    exits = re.findall(r"exitcode\s*: (-?\d+)", proc.stderr)
    assert "2" in exits and set(exits) <= {"2", "-15"} and proc.returncode != 0, proc.stderr[-3000:]
    assert not out.exists()
    # Each rank's own status, without the agent's race: process 1 of 2, run by itself, exits 2; as nothing stops it
    # in its grace period, its refusal was its own (a file missing on its node alone), and it then prints it, with its
    # rank. An unknown command is refused by the main process alike, so process 1 never prints it.
    alone = [sys.executable, "-m", "hf_transfer", *argv]
    rank1 = {**env, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}
    proc = subprocess.run(alone, capture_output=True, text=True, timeout=600, env=rank1, cwd=tmp_path)
    printed = proc.stderr.strip().splitlines()  # alone, without MASTER_ADDR, it may refuse that first
    said = [line.startswith("[rank 1] hf-transfer train: error: ") for line in printed]
    assert proc.returncode == 2 and said == ([] if argv[0] == "trian" else [True]), proc.stderr[-3000:]
    assert not out.exists()


def test_the_teacher_comparison_is_not_run_on_a_student_whose_weights_are_sharded(monkeypatch, caplog):
    """Under FSDP the main process alone ran the student over the validation rows, while the others went on to save:
    its forward waited for their shards for ever. The comparison is left out, said, and recorded as such."""
    from types import SimpleNamespace

    from hf_transfer.distill.command import _compare_with_teachers

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    trainer = SimpleNamespace(is_world_process_zero=lambda: True)  # nothing else of it may be touched
    facts = _compare_with_teachers(trainer, {}, plan=None, teachers=[], d=None, max_length=16)
    assert facts == {"teacher_comparison": "not measured: FSDP shards the student's weights"}
    assert "not measured under FSDP" in caplog.records[-1].getMessage()


def test_the_projection_between_widths_is_refused_where_it_cannot_train_in_step(monkeypatch):
    """Its gradients are averaged over the processes after fp16's GradScaler has checked each process's own for
    overflow (one process could skip a step the other takes), and DeepSpeed's engine holds the student alone."""
    from types import SimpleNamespace

    from hf_transfer.distill.plan import check_projection_launch
    from hf_transfer.errors import ConfigError

    for fp16 in (True, False):
        check_projection_launch(SimpleNamespace(fp16=fp16), 16, 32)  # one process: either precision
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_projection_launch(SimpleNamespace(fp16=False), 16, 32)  # DDP in fp32 or bf16: trained in step (above)
    with pytest.raises(ConfigError, match="cannot train under fp16 over several processes; use bf16"):
        check_projection_launch(SimpleNamespace(fp16=True), 16, 32)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="cannot train under DeepSpeed"):
        check_projection_launch(SimpleNamespace(fp16=False), 16, 32)
