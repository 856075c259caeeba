"""The README's reproducibility claim, route by route: on CPU the same command with the same seed gives
bit-identical weights, metrics and logged losses (each run in a fresh output folder; a run whose cache the first run
built reads it, and must still agree)."""

import json

import pytest
import test_cli
from safetensors.torch import load_file
from test_cli import train_argv
from test_distill import distill_argv, save_classifier
from test_few_shot import make_sentence_transformer

from hf_transfer.cli import main

tiny_data = test_cli.tiny_data  # the fixture, shared

ROUTES = {
    "train": [],
    "lora": ["--peft_method", "lora"],
    "calibrate_decision": ["--calibrate_decision", "macro_f1", "--calibration_split_percentage", "25"],
    "linear_probe_epochs": ["--linear_probe_epochs", "1"],
    "gradual_unfreezing": ["--gradual_unfreezing", "1", "--num_train_epochs", "3"],
    "few_shot": ["--few_shot", "true"],
    "distill": ["--student_layers", "[0]"],
    "distill_cached_logits": ["--student_layers", "[0]", "--cache_teacher_logits", "true"],
}


def _outcome(out):
    """The weights of every safetensors file, the evaluation metrics less their timings, and the logged losses."""
    weights = {path.name: load_file(str(path)) for path in sorted(out.glob("*.safetensors"))}
    metrics = json.loads((out / "eval_results.json").read_text())
    timed = ("runtime", "per_second", "seconds")
    metrics = {k: v for k, v in metrics.items() if not any(t in k for t in timed)}
    history = json.loads((out / "hf_transfer_run.json").read_text()).get("log_history") or []
    losses = [(e.get("step"), k, v) for e in history for k, v in e.items() if k.startswith(("loss", "eval_loss"))]
    return weights, metrics, losses


@pytest.mark.parametrize("route", list(ROUTES))
def test_the_same_command_twice_gives_bit_identical_weights_and_metrics(route, tmp_path, tiny_bert_dir, tiny_data):
    train, dev = tiny_data
    if route.startswith("distill"):
        teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"], layers=2)
        argv = lambda out: distill_argv(teacher, train, dev, out, tmp_path / "cache", *ROUTES[route])  # noqa: E731
    else:
        model = make_sentence_transformer(tmp_path / "st", tiny_bert_dir) if route == "few_shot" else tiny_bert_dir
        extra = [*ROUTES[route], "--seed", "3", "--disable_tqdm", "true"]
        argv = lambda out: train_argv(model, train, dev, out, *extra)  # noqa: E731
    assert main(argv(tmp_path / "first")) == 0
    assert main(argv(tmp_path / "second")) == 0
    (weights_a, metrics_a, losses_a), (weights_b, metrics_b, losses_b) = (
        _outcome(tmp_path / name) for name in ("first", "second")
    )
    assert weights_a and weights_a.keys() == weights_b.keys() and metrics_a and metrics_a == metrics_b
    assert losses_a == losses_b and (losses_a or route == "few_shot")  # the few-shot route logs no Trainer loss
    for name, tensors in weights_a.items():
        assert tensors.keys() == weights_b[name].keys()
        for key, tensor in tensors.items():
            assert tensor.equal(weights_b[name][key]), (name, key)
