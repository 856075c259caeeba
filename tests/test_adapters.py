"""PEFT adapters: default targets and the saved head per architecture, reload and merge give the same logits, the
trainer trains only the adapter and the head, and bad input stops the CLI before any weights are loaded."""

import ast
import json
import re
import shutil

import pandas as pd
import pytest
import test_cli
import torch
import yaml
from test_cli import train_argv
from test_trainers import _PadTokenizer, make_args, tiny_dataset
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, DataCollatorWithPadding

from hf_transfer.adapters.arguments import AdapterArguments
from hf_transfer.adapters.peft_model import base_model_reference, trainable_parameters, wrap
from hf_transfer.adapters.plan import check_freeze_conflicts, plan_adapter
from hf_transfer.cli import main
from hf_transfer.errors import ConfigError
from hf_transfer.train.trainer import TransferTrainer

SMALL = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": 99,
}
# model_type -> (config kwargs, default LoRA targets, head modules saved with the adapter)
ARCHITECTURES = {
    "bert": (SMALL, {"query", "value"}, ["bert.pooler", "classifier"]),
    "roberta": (SMALL, {"query", "value"}, ["classifier"]),
    "distilbert": (
        {"n_layers": 2, "dim": 32, "n_heads": 2, "hidden_dim": 37, "vocab_size": 99},
        {"q_lin", "v_lin"},  # PEFT has no table for DistilBERT: found by layer discovery
        ["pre_classifier", "classifier"],
    ),
    "gpt2": (
        {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, "vocab_size": 99, "pad_token_id": 0},
        {"c_attn"},
        ["transformer.ln_f", "score"],
    ),
    "llama": ({**SMALL, "num_key_value_heads": 1, "pad_token_id": 0}, {"q_proj", "v_proj"}, ["model.norm", "score"]),
}
LABELS = {"id2label": {0: "neg", 1: "mid", 2: "pos"}, "label2id": {"neg": 0, "mid": 1, "pos": 2}}

tiny_data = test_cli.tiny_data  # the fixture, shared


def tiny_config(model_type, **overrides):
    return AutoConfig.for_model(model_type, **{**ARCHITECTURES[model_type][0], **LABELS, **overrides})


def meta_model(config):
    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


def saved_base(tmp_path, model_type, seed=0, **overrides):
    """A pretrained-looking folder: the bare model, no classification head."""
    torch.manual_seed(seed)
    path = tmp_path / f"base-{model_type}"
    AutoModel.from_config(tiny_config(model_type, **overrides)).save_pretrained(path)
    return path


def load_base(path, model_type, **overrides):
    return AutoModelForSequenceClassification.from_pretrained(path, config=tiny_config(model_type, **overrides))


def perturb_trainable(model, seed=1):
    """Stand in for training: LoRA's B starts at zero, so an untouched adapter would change nothing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=g) * 0.2)


def logits(model, seed=2):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 99, (3, 9), generator=g)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


# --- planning on the meta device --------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_default_targets_and_head_per_architecture(model_type):
    _, targets, head = ARCHITECTURES[model_type]
    plan = plan_adapter(AdapterArguments(peft_method="LoRA"), meta_model(tiny_config(model_type)))
    assert plan.method == "lora"
    assert set(plan.peft_config.target_modules) == targets
    assert list(plan.head_modules) == head
    assert plan.peft_config.task_type == "SEQ_CLS"


def test_ia3_feedforward_modules_are_among_the_targets():
    plan = plan_adapter(AdapterArguments(peft_method="ia3"), meta_model(tiny_config("distilbert")))
    assert set(plan.peft_config.target_modules) == {"k_lin", "v_lin", "lin2"}
    assert set(plan.peft_config.feedforward_modules) == {"lin2"}


def test_ambiguous_derived_targets_become_an_exact_regex():
    """ELECTRA has no IA3 table: `output.dense` would also match `attention.output.dense`, so a regex names them."""
    from peft.tuners.ia3 import IA3Layer

    config = AutoConfig.for_model("electra", **SMALL, embedding_size=16, **LABELS)
    plan = plan_adapter(AdapterArguments(peft_method="ia3"), meta_model(config))
    model = wrap(AutoModelForSequenceClassification.from_config(config), plan)
    adapted = {n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, IA3Layer)}
    assert adapted == {
        f"electra.encoder.layer.{i}.{rel}"
        for i in (0, 1)
        for rel in ("attention.self.key", "attention.self.value", "output.dense")
    }


def test_short_fields_and_peft_config_override():
    args = AdapterArguments(
        peft_method="lora", lora_r=4, lora_alpha=32, target_modules="query, key", peft_config={"lora_dropout": 0.0}
    )
    assert args.target_modules == ["query", "key"]
    config = plan_adapter(args, meta_model(tiny_config("bert"))).peft_config
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 32, 0.0)
    assert set(config.target_modules) == {"query", "key"}


def test_peft_config_true_false_fields_take_the_spellings_of_our_own_fields():
    """YAML 1.2 reads `{use_rslora: no}` as the text "no", which PEFT took as true (rsLoRA on); the PEFT config's
    true/false fields now read yes/no, y/n, t/f, 1/0 in any case, as hf-transfer's own fields do."""
    peft_config = {"use_rslora": "no", "use_dora": "YES", "fan_in_fan_out": 0, "lora_bias": False, "lora_dropout": 0.0}
    model = meta_model(tiny_config("bert"))
    config = plan_adapter(AdapterArguments("lora", peft_config=peft_config), model).peft_config
    assert (config.use_rslora, config.use_dora, config.fan_in_fan_out, config.lora_bias) == (False, True, False, False)
    assert config.lora_dropout == 0.0
    for value in ("on", 2, 1.0, [True]):
        with pytest.raises(ConfigError, match=r"^peft_config.use_rslora expects true or false .*, got"):
            plan_adapter(AdapterArguments("lora", peft_config={"use_rslora": value}), model)


def test_peft_config_numbers_are_read_as_our_own_number_fields_are():
    """`{r: "4"}` and `{r: 4.0}` failed inside PEFT ("'<=' not supported between instances of 'str' and 'int'", or
    torch's "must be tuple of ints") while `--lora_r "4"` and `--lora_r 4.0` work: the PEFT config's int and float
    fields now read a number's text, and a whole float for an int; anything else is one line naming the field."""
    model = meta_model(tiny_config("bert"))
    peft_config = {"r": "4", "lora_alpha": 32.0, "lora_dropout": "0.1"}
    config = plan_adapter(AdapterArguments("lora", peft_config=peft_config), model).peft_config
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 32, 0.1) and type(config.r) is int
    prompt = plan_adapter(AdapterArguments("prompt_tuning", peft_config={"num_virtual_tokens": 8.0}), model)
    assert prompt.peft_config.num_virtual_tokens == 8
    with pytest.raises(ConfigError, match=r"^peft_config.r expects a whole number, got 'four'\.$"):
        plan_adapter(AdapterArguments("lora", peft_config={"r": "four"}), model)
    with pytest.raises(ConfigError, match=r"^peft_config.lora_dropout expects a number, got \[0.1\]\.$"):
        plan_adapter(AdapterArguments("lora", peft_config={"lora_dropout": [0.1]}), model)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(peft_method="lora", lora_r=0), "lora_r must be > 0, got 0"),
        (dict(peft_method="lora", lora_dropout=1.0), "lora_dropout"),
        (dict(peft_method="none", merge_adapter=True), "merge_adapter"),
        (dict(peft_method="lora", loraplus_lr_ratio=0), "loraplus_lr_ratio must be a number > 0"),
        (dict(peft_method="ia3", loraplus_lr_ratio=16), "peft_method ia3 has none"),
    ],
)
def test_adapter_arguments_validation(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        AdapterArguments(**kwargs)


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        (dict(peft_method="lorra"), ["'lorra'", "did you mean 'lora'", "ia3", "adalora"]),
        (dict(peft_method="lora", target_modules=["qkv"]), ["'qkv'", "attention.self.query", "intermediate.dense"]),
        (dict(peft_method="lora", target_modules=["classifier"]), ["'classifier'", "outside its head"]),
        (
            dict(peft_method="lora", peft_config={"lora_alpa": 4}),
            ["no field 'lora_alpa'", "did you mean 'lora_alpha'"],
        ),
        (dict(peft_method="lora", peft_config={"rank": 4}), ["no field 'rank'", "lora_alpha, lora_bias"]),
        (dict(peft_method="prompt_tuning"), ["needs the number of virtual tokens", "{num_virtual_tokens: N}"]),
        (  # BERT takes no past_key_values: PEFT would fail at the first training step, after the data and model
            dict(peft_method="prefix_tuning", peft_config={"num_virtual_tokens": 4}),
            ["prefix_tuning", "BertForSequenceClassification takes no past_key_values"],
        ),
        (
            dict(peft_method="prompt_tuning", merge_adapter=True, peft_config={"num_virtual_tokens": 4}),
            ["merge_adapter", "virtual tokens"],
        ),
        # 0 trained the head alone under prompt tuning's name; -3 failed inside PEFT's tensors
        (dict(peft_method="prompt_tuning", peft_config={"num_virtual_tokens": 0}), ["num_virtual_tokens", ">= 1"]),
        # below its target, AdaLoRA's pruning failed at the first step (kthvalue out of range)
        (dict(peft_method="adalora", peft_config={"init_r": 2}, lora_r=6), ["init_r (2) must be >= target_r (6"]),
        *[
            (dict(peft_method=m), [f"peft_method {m} cannot train a sequence classifier"])
            for m in ("cpt", "poly", "multitask_prompt_tuning", "shadow")
        ],  # tracebacks, in planning or at step 0
    ],
)
def test_bad_plans_are_one_line_errors(kwargs, needles):
    with pytest.raises(ConfigError) as err:
        plan_adapter(AdapterArguments(**kwargs), meta_model(tiny_config("bert")))
    message = str(err.value)
    assert "\n" not in message
    for needle in needles:
        assert needle.lower() in message.lower(), message


def test_ln_tuning_tunes_the_blocks_layer_norms_where_peft_has_no_table():
    """PEFT's LN-tuning table has no BERT entry: the targets had fallen back to the query and value projections,
    which LN-tuning then trained at full rank."""
    from peft import get_peft_model

    plan = plan_adapter(AdapterArguments(peft_method="ln_tuning"), meta_model(tiny_config("bert")))
    model = get_peft_model(AutoModelForSequenceClassification.from_config(tiny_config("bert")), plan.peft_config)
    tuned = {n.split(".encoder.layer.0.")[1] for n, p in model.named_parameters() if p.requires_grad and ".0." in n}
    assert tuned == {f"{m}.ln_tuning_layers.default.{w}" for m in ("attention.output.LayerNorm", "output.LayerNorm")
                     for w in ("weight", "bias")}  # fmt: skip


def test_oft_plans_with_its_own_block_size_and_weight_initialised_methods_pass_the_meta_dry_run():
    """OFT's r (set from lora_r) and its block size exclude each other: every OFT run was refused by default. SHiRA
    initialises from the weights, which the meta-device dry run does not have: it was refused as a bad config."""
    oft = plan_adapter(AdapterArguments(peft_method="oft"), meta_model(tiny_config("bert"))).peft_config
    assert oft.r == 0 and oft.oft_block_size > 0
    shira = plan_adapter(AdapterArguments(peft_method="shira"), meta_model(tiny_config("bert"))).peft_config
    assert shira.peft_type == "SHIRA"


def test_an_adalora_run_is_not_resumed():
    from hf_transfer.adapters.method_rules import check_resumable

    with pytest.raises(ConfigError, match="AdaLoRA checkpoint holds ranks already pruned"):
        check_resumable("adalora", type("Args", (), {"resume_from_checkpoint": "out/checkpoint-4"})())
    check_resumable("loha", type("Args", (), {"resume_from_checkpoint": "out/checkpoint-4"})())


def test_freeze_options_conflict_with_an_adapter(tmp_path):
    check_freeze_conflicts("lora", make_args(tmp_path))  # nothing set: fine
    with pytest.raises(ConfigError, match="freeze_layers, layerwise_lr_decay would do nothing"):
        check_freeze_conflicts("lora", make_args(tmp_path, freeze_layers=2, layerwise_lr_decay=0.9))


def test_base_model_reference(tmp_path):
    assert base_model_reference("/some/dir", "org/model") == ("org/model", "base_model_hub_id")
    assert base_model_reference("org/model") == ("org/model", "model_name_or_path")
    cached = tmp_path / "hub" / "models--org--name" / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    assert base_model_reference(str(cached)) == ("org/name", "Hugging Face cache folder")
    local = tmp_path / "local"
    local.mkdir()
    # A config's _name_or_path names the model it was derived from (all-MiniLM-L6-v2's: its parent), not itself.
    (local / "config.json").write_text(json.dumps({"_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}))
    assert base_model_reference(str(local)) == (str(local.resolve()), "local path")


# --- real weights: save, reload, merge -------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_reload_gives_identical_logits(model_type, tmp_path):
    """The guard against the lost-head bug: the head is re-initialised at random on every load of the base."""
    from peft import AutoPeftModelForSequenceClassification

    base = saved_base(tmp_path, model_type)
    plan = plan_adapter(AdapterArguments(peft_method="lora"), meta_model(tiny_config(model_type)))
    model = wrap(load_base(base, model_type), plan)
    perturb_trainable(model)
    before = logits(model)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(tmp_path / "adapter", **LABELS)
    assert torch.equal(logits(reloaded), before)
    assert reloaded.config.id2label == LABELS["id2label"]


def test_a_head_inside_the_base_is_saved_too(tmp_path):
    """A base saved without BERT's pooler gets a random one at each load: PEFT's default (`classifier`, `score`)
    loses it, the discovered head keeps it."""
    from peft import LoraConfig, PeftModel, get_peft_model

    base = saved_base(tmp_path, "bert")
    bare = AutoModel.from_pretrained(base, add_pooling_layer=False)
    bare.save_pretrained(tmp_path / "no-pooler")
    results = {}
    for name, make in {
        "peft default": lambda m: get_peft_model(m, LoraConfig(task_type="SEQ_CLS", target_modules=["query"])),
        "hf_transfer": lambda m: wrap(m, plan_adapter(AdapterArguments("lora"), meta_model(tiny_config("bert")))),
    }.items():
        torch.manual_seed(0)
        model = make(load_base(tmp_path / "no-pooler", "bert"))
        perturb_trainable(model)
        before = logits(model)
        model.save_pretrained(tmp_path / name)
        torch.manual_seed(1)
        reloaded = PeftModel.from_pretrained(load_base(tmp_path / "no-pooler", "bert"), tmp_path / name)
        results[name] = (logits(reloaded) - before).abs().max().item()
    assert results["hf_transfer"] == 0.0
    assert results["peft default"] > 1e-3


@pytest.mark.parametrize("method", ["lora", "ia3"])
@pytest.mark.parametrize("model_type", ["distilbert", "roberta"])
def test_merged_model_predicts_like_the_adapter(method, model_type, tmp_path):
    """RoBERTa's head is a container module, which PEFT's own IA3 merge cannot unload."""
    from hf_transfer.adapters.peft_model import write_merged

    base = saved_base(tmp_path, model_type)
    plan = plan_adapter(AdapterArguments(peft_method=method), meta_model(tiny_config(model_type)))
    model = wrap(load_base(base, model_type), plan)
    perturb_trainable(model)
    before = logits(model)
    path = write_merged(model, None, tmp_path)
    merged = AutoModelForSequenceClassification.from_pretrained(path)
    torch.testing.assert_close(logits(merged), before, atol=1e-5, rtol=1e-5)
    assert merged.config.id2label == LABELS["id2label"]
    assert not any("lora" in n or "ia3" in n for n, _ in merged.named_parameters())


# --- training --------------------------------------------------------------------------------------------------


def _train(tmp_path, model, dataset, **kw):
    args = make_args(tmp_path, optim="adamw_torch", learning_rate=1e-2, per_device_train_batch_size=8, **kw)
    trainer = TransferTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(_PadTokenizer())
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    return trainer, before


def test_transfer_trainer_trains_only_the_adapter_and_the_head(tmp_path):
    config = tiny_config("bert", vocab_size=100, hidden_dropout_prob=0.0)
    model = AutoModelForSequenceClassification.from_config(config)
    model = wrap(model, plan_adapter(AdapterArguments("lora"), meta_model(config)))
    trainer, before = _train(tmp_path, model, tiny_dataset())
    assert trainer.freeze_plan.stages == () and trainer.layout.depth == 2
    for name, param in trainer.model.named_parameters():
        changed = not torch.equal(before[name], param)
        assert changed == param.requires_grad, name
        assert param.requires_grad == ("lora_" in name or ".modules_to_save." in name), name
    trainable, total = trainable_parameters(trainer.model)
    assert trainer.freeze_summary()["trainable_parameters_now"] == trainable < total / 5


def test_loraplus_trains_the_b_matrices_at_the_ratio_times_the_learning_rate(tmp_path):
    config = tiny_config("bert", vocab_size=100, hidden_dropout_prob=0.0)
    model = AutoModelForSequenceClassification.from_config(config)
    model = wrap(model, plan_adapter(AdapterArguments("lora", loraplus_lr_ratio=16), meta_model(config)))
    args = make_args(tmp_path, optim="adamw_torch", learning_rate=1e-3, weight_decay=0.01)
    trainer = TransferTrainer(model=model, args=args, lora_b_lr_ratio=16)
    optimizer = trainer.create_optimizer()
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(by_param) == {id(p) for p in trainable.values()}  # each trainable parameter in exactly one group
    for name, param in trainable.items():
        group = by_param[id(param)]
        assert group["lr"] == pytest.approx(1.6e-2 if ".lora_B." in name else 1e-3), name
        assert group["weight_decay"] == (0.0 if name.endswith("bias") or "LayerNorm" in name else 0.01), name
    assert any(".lora_B." in n for n in trainable) and any(".lora_A." in n for n in trainable)


def test_transfer_trainer_rejects_freeze_options_on_a_peft_model(tmp_path):
    config = tiny_config("bert", vocab_size=100)
    model = wrap(
        AutoModelForSequenceClassification.from_config(config),
        plan_adapter(AdapterArguments("lora"), meta_model(config)),
    )
    with pytest.raises(ConfigError, match="train_head_only"):
        _train(tmp_path, model, tiny_dataset(), train_head_only=True)


def test_multi_label_head_with_an_adapter(tmp_path):
    config = tiny_config("roberta", vocab_size=100, pad_token_id=0, problem_type="multi_label_classification")
    model = AutoModelForSequenceClassification.from_config(config)
    model = wrap(model, plan_adapter(AdapterArguments("lora"), meta_model(config)))
    rows = tiny_dataset(n=32).map(lambda row, i: {"labels": [float(i % 2), float(i % 3 == 0), 1.0]}, with_indices=True)
    trainer, before = _train(tmp_path, model, rows)
    assert trainer.problem_type == "multi_label_classification"
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses and all(loss == loss for loss in losses)  # BCE, finite
    head = "base_model.model.classifier.modules_to_save.default.out_proj.weight"
    assert not torch.equal(before[head], trainer.model.get_parameter(head))


def test_adalora_runs_its_rank_schedule(tmp_path):
    config = tiny_config("bert", vocab_size=100)
    model = AutoModelForSequenceClassification.from_config(config)
    args = AdapterArguments("adalora", peft_config={"tinit": 1, "tfinal": 1, "deltaT": 1})
    model = wrap(model, plan_adapter(args, meta_model(config)))
    trainer, _ = _train(tmp_path, model, tiny_dataset(), num_train_epochs=2)
    assert model.peft_config["default"].total_step == trainer.state.max_steps == 8
    assert model.peft_config["default"].rank_pattern  # ranks were re-allocated


# --- the command line --------------------------------------------------------------------------------------------


@pytest.fixture
def csv_data(tmp_path):
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    frame = pd.DataFrame(
        {
            "text": [f"{words[i % 8]} thing number {i}" for i in range(48)],
            "label": ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)],
        }
    )
    frame[:40].to_csv(tmp_path / "train.csv", index=False)
    frame[40:].to_csv(tmp_path / "dev.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "dev.csv"


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--peft_method", "lorra"], "did you mean 'lora'"),
        (["--peft_method", "lora", "--target_modules", "[qkv, value]"], "attention.self.query"),
        (["--peft_method", "lora", "--lora_r", "0"], "lora_r must be > 0"),
        (["--peft_method", "lora", "--freeze_layers", "1"], "freeze_layers would do nothing"),
        (["--peft_method", "lora", "--peft_config", "{lora_alpa: 4}"], "did you mean 'lora_alpha'"),
        (["--peft_method", "prompt_tuning"], "num_virtual_tokens"),
        (["--peft_method", "prefix_tuning", "--peft_config", "{num_virtual_tokens: 4}"], "takes no past_key_values"),
    ],
)
def test_bad_adapter_input_is_one_line_exit_2_and_writes_nothing(
    extra, needle, tmp_path, tiny_bert_dir, csv_data, capsys
):
    out = tmp_path / "out"
    code = main(train_argv(tiny_bert_dir, *csv_data, out, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert needle.lower() in err.lower(), err
    assert not out.exists()


def test_a_bf16_adapter_run_saves_fp32_and_its_reload_check_compares_like_with_like(tmp_path, tiny_bert_dir, csv_data):
    """The reload check compared the trained model, whose forward accelerate had wrapped in the run's bf16 autocast,
    with the reloaded adapter in fp32: a bf16 run recorded a bf16 rounding gap (0.0013 on MiniLM) as if the reload
    lost something. Both now run in fp32; a base saved in bf16 trains, and saves adapter and merged model, in fp32."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    base = tmp_path / "base-bf16"
    AutoModel.from_pretrained(tiny_bert_dir).to(torch.bfloat16).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(base)
    out = tmp_path / "run"
    argv = train_argv(base, *csv_data, out, "--peft_method", "lora", "--merge_adapter", "true", "--bf16", "true")
    assert main([*argv, "--learning_rate", "5e-3"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["precision"] == "bf16" and record["adapter"]["reload_max_abs_logit_diff"] == 0.0
    for path in (out / "adapter_model.safetensors", out / "merged" / "model.safetensors"):
        with safe_open(str(path), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}, path
    assert json.loads((out / "merged" / "config.json").read_text())["dtype"] == "float32"


def test_lora_run_end_to_end(tmp_path, tiny_bert_dir, csv_data, capsys):
    from peft import PeftModel
    from transformers import AutoTokenizer

    config = tmp_path / "lora.yaml"
    config.write_text(
        yaml.safe_dump(
            {"base_model_hub_id": "org/tiny-bert", "merge_adapter": True, "lora_r": 4, "learning_rate": 5e-3}
        )
    )
    out = tmp_path / "run"
    assert (
        main(
            ["train", "--config", str(config), *train_argv(tiny_bert_dir, *csv_data, out)[1:], "--peft_method", "lora"]
        )
        == 0
    )

    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "README.md",
        "training_curves.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "org/tiny-bert"
    # PEFT's wrapper appends its own head names ("classifier", "score"; "pre_classifier" from PEFT 0.22) to the
    # planned head: the planned ones come first, and each name is listed once.
    modules = saved["modules_to_save"]
    assert modules[:2] == ["bert.pooler", "classifier"] and len(set(modules)) == len(modules), modules

    record = json.loads((out / "hf_transfer_run.json").read_text())
    adapter = record["adapter"]
    assert adapter["method"] == "lora" and adapter["r"] == 4 and adapter["lora_alpha"] == 16
    assert set(adapter["target_modules"]) == {"query", "value"}
    assert adapter["modules_to_save"] == ["bert.pooler", "classifier"]
    assert 0 < adapter["trainable_percent"] < 2
    assert adapter["size_on_disk_bytes"] == sum(
        (out / n).stat().st_size for n in ("adapter_model.safetensors", "adapter_config.json")
    )
    assert adapter["reload_max_abs_logit_diff"] == 0.0
    # The freeze counts are the adapter run's, not the merged copy's (merge_adapter made them the head's alone).
    freeze = record["freeze"]
    assert freeze["trainable_parameters_now"] == adapter["trainable_parameters"]
    assert freeze["trainable_parameters_now"] + freeze["frozen_parameters_now"] == adapter["total_parameters"]
    assert freeze["permanently_frozen_parameters"] == freeze["frozen_parameters_now"]
    memory = record["memory"]
    assert memory["peak_rss_kib"] >= memory["peak_rss_after_training_kib"] >= memory["rss_after_model_load_kib"] > 0
    resolved = yaml.safe_load((out / "hf_transfer_config.yaml").read_text())
    assert resolved["peft_method"] == "lora" and resolved["lora_r"] == 4

    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert header["base_model"] == "org/tiny-bert" and header["library_name"] == "peft" and "lora" in header["tags"]
    assert "AutoPeftModelForSequenceClassification" in (out / "README.md").read_text()

    # The Hub id cannot be reached offline: load the same base from its folder, as the card explains.
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    reloaded = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, **labels), out
    )
    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert merged.config.id2label == labels["id2label"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["good thing", "awful thing number 3"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(
            merged.eval()(**batch).logits, reloaded.eval()(**batch).logits, atol=1e-5, rtol=1e-5
        )

    # `evaluate` takes the adapter folder itself: onto the recorded base, which cannot be reached offline, so onto
    # the folder the run trained from; or onto the base given as a folder; scoring as the adapter run's own final
    # evaluation did. With neither the Hub id nor that folder to load, one line names the option.
    dev = csv_data[1]
    evaluate = ["evaluate", "--model_name_or_path", str(out), "--validation_file", str(dev)]
    assert main([*evaluate, "--output_file", str(tmp_path / "fallback.json")]) == 0
    fallback = json.loads((tmp_path / "fallback.json").read_text())
    assert fallback["accuracy"] == pytest.approx(record["eval_metrics"]["eval_accuracy"])
    moved = tmp_path / "moved"
    shutil.copytree(out, moved, ignore=shutil.ignore_patterns("merged"))
    config = yaml.safe_load((moved / "hf_transfer_config.yaml").read_text())
    (moved / "hf_transfer_config.yaml").write_text(yaml.safe_dump({**config, "model_name_or_path": "/gone/base"}))
    capsys.readouterr()
    assert main(["evaluate", "--model_name_or_path", str(moved), "--validation_file", str(dev)]) == 2
    assert "--base_model_name_or_path" in capsys.readouterr().err
    assert (
        main([*evaluate, "--base_model_name_or_path", str(tiny_bert_dir), "--output_file", str(tmp_path / "m.json")])
        == 0
    )
    scored = json.loads((tmp_path / "m.json").read_text())
    assert scored["accuracy"] == pytest.approx(record["eval_metrics"]["eval_accuracy"])
    assert main(["evaluate", "--model_name_or_path", str(out / "merged"), "--validation_file", str(dev),
                 "--base_model_name_or_path", str(tiny_bert_dir)]) == 2  # fmt: skip
    assert "only for adapter folders" in capsys.readouterr().err

    # The merged model is a model of its own: its folder holds the run's record and a card that loads it without
    # PEFT, and `hf-transfer card` regenerates that card from what the folder holds.
    merged_card = (out / "merged" / "README.md").read_text()
    header = yaml.safe_load(merged_card.split("---")[1])
    assert header["library_name"] == "transformers" and header["base_model"] == "org/tiny-bert"
    assert "| saved as | merged into the weights |" in merged_card and "AutoPeftModel" not in merged_card
    assert json.loads((out / "merged" / "hf_transfer_run.json").read_text())["adapter"]["r"] == 4
    (out / "merged" / "README.md").unlink()
    assert main(["card", str(out / "merged")]) == 0
    assert (out / "merged" / "README.md").read_text() == merged_card


def test_ia3_multi_label_run_end_to_end(tmp_path, tiny_bert_dir, capsys):
    from peft import AutoPeftModelForSequenceClassification

    rows = [
        {"text": f"item {i} is {'red' if i % 2 else 'blue'}", "labels": [["a"], ["b"], ["a", "b"], []][i % 4]}
        for i in range(40)
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "ml"
    argv = train_argv(tiny_bert_dir, train, train, out, "--problem_type", "multi_label_classification")
    assert main([*argv, "--peft_method", "ia3", "--merge_adapter", "true"]) == 0
    adapter = json.loads((out / "hf_transfer_run.json").read_text())["adapter"]
    assert adapter["method"] == "ia3" and adapter["feedforward_modules"] == ["output.dense"]
    assert adapter["reload_max_abs_logit_diff"] == 0.0
    # No Hub id known: the adapter names the base by its absolute path, so AutoPeftModel loads it as is.
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(
        tiny_bert_dir.resolve()
    )
    model = AutoPeftModelForSequenceClassification.from_pretrained(
        out, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1}, problem_type="multi_label_classification"
    )
    assert model.config.problem_type == "multi_label_classification"
    merged = json.loads((out / "merged" / "config.json").read_text())
    assert merged["problem_type"] == "multi_label_classification" and merged["id2label"] == {"0": "a", "1": "b"}

    # The card's quick start loads the adapter with its labels and problem type (sigmoid scores, as predict gives):
    # it passed num_labels alone, so its model said LABEL_0/LABEL_1 and a pipeline() over it scored by softmax.
    snippet = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    namespace = {}
    exec(snippet.replace('"ml"', f'"{out}"'), namespace)
    config = namespace["model"].config
    assert (config.id2label, config.problem_type) == ({0: "a", 1: "b"}, "multi_label_classification")
    (got,) = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    pd.DataFrame({"text": ["I really enjoyed this!"]}).to_csv(tmp_path / "in.csv", index=False)
    argv = ["predict", "--model_name_or_path", str(out), "--input_file", str(tmp_path / "in.csv")]
    assert main([*argv, "--output_file", str(tmp_path / "out.csv")]) == 0
    row = pd.read_csv(tmp_path / "out.csv").iloc[0]
    assert {g["label"]: g["score"] for g in got} == pytest.approx({"a": row["prob_a"], "b": row["prob_b"]}, abs=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ([], 2e-3),  # LoRA with no learning rate given takes LoRA's
        (["--learning_rate", "5e-5"], 5e-5),  # one the user gave wins, even the full fine-tune's own value
        (["--peft_method", "ia3"], 5e-5),  # other methods keep TrainingArguments' default
    ],
)
def test_lora_takes_its_own_learning_rate_only_when_none_is_given(tmp_path, extra, expected):
    from hf_transfer.adapters.plan import LORA_LEARNING_RATE, apply_adapter_learning_rate
    from hf_transfer.cli import parse_command_args

    argv = [
        "--model_name_or_path",
        "m",
        "--train_file",
        "t.csv",
        "--output_dir",
        str(tmp_path),
        "--peft_method",
        "lora",
    ]
    _, _, adapter, training = parse_command_args("train", argv + extra)
    assert LORA_LEARNING_RATE == 2e-3
    changed = apply_adapter_learning_rate(adapter, training)
    assert training.learning_rate == expected
    assert changed == (expected if extra == [] else None)


def _ignored_field_warnings(tmp_path, caplog, extra):
    """`train` parsed with `extra`, then the adapter checks: its adapter arguments and the 'set but ignored' lines."""
    from hf_transfer.adapters.plan import check_adapter_args
    from hf_transfer.cli import parse_command_args

    argv = ["--model_name_or_path", "m", "--train_file", "t.csv", "--output_dir", str(tmp_path / "out"), *extra]
    _, _, adapter, training = parse_command_args("train", argv)
    with caplog.at_level("WARNING", logger="hf_transfer"):
        check_adapter_args(adapter, training)
    return adapter, [r.getMessage() for r in caplog.records if "set but ignored" in r.getMessage()]


@pytest.mark.parametrize(
    "extra, warned",
    [
        (["--lora_r", "16", "--lora_dropout", "0.1"], "lora_r, lora_dropout set but ignored"),
        (["--lora_r", "8"], "lora_r set but ignored"),  # given, though it is the default
        (["--config", "lora.yaml", "--peft_method", "none"], "lora_r, lora_alpha, target_modules set but ignored"),
        ([], None),
        (["--peft_method", "lora", "--lora_r", "16"], None),
    ],
    ids=["flags", "default value given", "lora config overridden", "none given", "lora"],
)
def test_lora_fields_set_without_an_adapter_are_named_in_a_warning(tmp_path, caplog, extra, warned):
    """`--lora_r 16` with peft_method none was accepted silently, and a full fine-tune ran."""
    (tmp_path / "lora.yaml").write_text("peft_method: lora\nlora_r: 16\nlora_alpha: 32\ntarget_modules: all-linear\n")
    extra = [str(tmp_path / e) if e == "lora.yaml" else e for e in extra]
    adapter, lines = _ignored_field_warnings(tmp_path, caplog, extra)
    if warned is None:
        assert lines == []
        return
    assert len(lines) == 1 and lines[0].startswith(warned) and "set --peft_method lora" in lines[0], lines
    assert AdapterArguments(lora_alpha=8).ignored_fields() == [
        "lora_alpha"
    ]  # built in code: what differs from default


def test_the_ignored_lora_fields_warning_reaches_stderr_before_any_compute(tmp_path):
    import subprocess
    import sys

    (tmp_path / "t.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    argv = ["train", "--model_name_or_path", str(tmp_path / "missing"), "--train_file", str(tmp_path / "t.csv"),
            "--output_dir", str(tmp_path / "out"), "--lora_r", "16"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    warning = [line for line in done.stderr.splitlines() if "set but ignored" in line]
    assert warning == [
        "lora_r set but ignored: peft_method is none, so the whole model trains without an adapter; set "
        "--peft_method lora to train a LoRA adapter with it."
    ], done.stderr


def test_lora_learning_rate_in_a_config_file_counts_as_given(tmp_path, caplog):
    from hf_transfer.adapters.plan import apply_adapter_learning_rate
    from hf_transfer.cli import parse_command_args

    config = tmp_path / "c.yaml"
    config.write_text(
        f"model_name_or_path: m\ntrain_file: t.csv\noutput_dir: {tmp_path}\npeft_method: lora\nlearning_rate: 1.0e-4\n"
    )
    _, _, adapter, training = parse_command_args("train", ["--config", str(config)])
    assert apply_adapter_learning_rate(adapter, training) is None and training.learning_rate == 1e-4
    # A full fine-tune's config with --peft_method lora added kept its 5e-5 without a word (the README's own example)
    config.write_text(config.read_text().replace("1.0e-4", "5.0e-5"))
    _, _, adapter, training = parse_command_args("train", ["--config", str(config)])
    with caplog.at_level("WARNING"):
        assert apply_adapter_learning_rate(adapter, training) is None and training.learning_rate == 5e-5
    assert "learning_rate 5e-05 is a full fine-tune's rate" in caplog.text
    # Arguments built in code carry no record of what was given, and are left alone.
    training.__dict__.pop("given_fields")
    training.learning_rate = 5e-5
    assert apply_adapter_learning_rate(adapter, training) is None and training.learning_rate == 5e-5


# --- precision, and adapters through the other commands (sixth audit) ----------------------------------------------


def last_line_of_an_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_fp16_on_the_cpu_is_refused_before_any_weight_loads(tmp_path, tiny_bert_dir, csv_data, capsys):
    # accelerate applies no fp16 autocast on the CPU: the run trained in fp32 while the record and card said fp16.
    out = tmp_path / "out"
    assert main(train_argv(tiny_bert_dir, *csv_data, out, "--peft_method", "lora", "--fp16", "true")) == 2
    line = last_line_of_an_error(capsys)
    assert "fp16" in line and "--bf16 true" in line, line
    assert not out.exists()


def prompt_tuning_adapter(path, base_dir, labels=("neg", "pos")):
    """A prompt-tuning adapter folder as `train` writes one: virtual tokens and a head, no weights to merge."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoTokenizer, BertForSequenceClassification

    base = BertForSequenceClassification.from_pretrained(
        base_dir, id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)}
    )
    config = PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4, modules_to_save=["classifier"])
    get_peft_model(base, config).save_pretrained(path)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(path)
    (path / "hf_transfer_run.json").write_text(
        json.dumps({"label_names": list(labels), "problem_type": "single_label_classification"})
    )
    return path


@pytest.mark.parametrize("command", ["export", "merge"])
def test_a_prompt_learning_adapter_is_refused_where_a_merged_model_is_needed(
    command, tmp_path, tiny_bert_dir, capsys, monkeypatch
):
    from transformers import AutoModelForSequenceClassification

    adapter = prompt_tuning_adapter(tmp_path / "pt", tiny_bert_dir)
    out = tmp_path / "out"
    # Refused from adapter_config.json alone: no weights load (merge failed with an AttributeError traceback after
    # loading the base; export with "has no attribute 'merge_and_unload'").
    monkeypatch.setattr(
        AutoModelForSequenceClassification, "from_pretrained", lambda *a, **k: pytest.fail("weights were loaded")
    )
    if command == "export":
        argv = ["export", str(adapter), "--format", "onnx", "--output_dir", str(out)]
    else:
        argv = ["merge", "--pretrained", str(tiny_bert_dir), "--finetuned", str(adapter), "--alpha", "1"]
        argv += ["--output_dir", str(out)]
    assert main(argv) == 2
    line = last_line_of_an_error(capsys)
    assert "prompt_tuning" in line and "virtual tokens" in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "extra, warned",
    [
        (["--peft_method", "ia3", "--lora_r", "16", "--lora_dropout", "0.1"], "lora_r, lora_dropout set but ignored"),
        (["--peft_method", "loha", "--lora_dropout", "0.1", "--lora_alpha", "8"], "lora_dropout set but ignored"),
        (["--peft_method", "prompt_tuning", "--target_modules", "[query]"], "target_modules set but ignored"),
        (["--peft_method", "lora", "--lora_r", "16", "--lora_dropout", "0.1", "--target_modules", "[query]"], None),
        (["--peft_method", "ia3", "--target_modules", "[query]"], None),
    ],
    ids=["ia3 has no rank", "loha has no lora_dropout", "prompt tuning has no targets", "lora", "ia3 targets"],
)
def test_short_fields_the_method_has_not_are_named_in_a_warning(tmp_path, caplog, extra, warned):
    """`--peft_method ia3 --lora_r 16` was accepted and ignored silently (IA3 has no rank)."""
    adapter, lines = _ignored_field_warnings(tmp_path, caplog, extra)
    if warned is None:
        assert lines == []
        return
    assert len(lines) == 1 and lines[0].startswith(warned) and adapter.peft_method in lines[0], lines


@pytest.mark.parametrize("model_type", ["roberta", "distilbert"])
def test_all_linear_records_only_the_modules_that_got_an_adapter(model_type, tmp_path):
    """PEFT expands all-linear to every linear layer but the last, head ones included (`classifier.dense`,
    `pre_classifier`); being saved whole, those get no adapter, yet the record and the card listed them as targets."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from hf_transfer.adapters.peft_model import adapter_record

    config = tiny_config(model_type)
    plan = plan_adapter(AdapterArguments(peft_method="lora", target_modules=["all-linear"]), meta_model(config))
    model = wrap(AutoModelForSequenceClassification.from_config(config), plan)
    adapted = {
        name.removeprefix("base_model.model.") for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)
    }
    record = adapter_record(model, plan, tmp_path, ("base", "local path"))
    assert set(record["target_modules"]) == adapted, set(record["target_modules"]) ^ adapted
    assert not any(name.startswith(("classifier", "pre_classifier")) for name in record["target_modules"])


def test_loraplus_through_the_cli_is_recorded_in_the_run_record_and_the_card(
    tmp_path, tiny_bert_dir, csv_data, caplog
):
    out = tmp_path / "run"
    argv = [*train_argv(tiny_bert_dir, *csv_data, out), "--peft_method", "lora", "--loraplus_lr_ratio", "4"]
    assert main([*argv, "--base_model_hub_id", "org/tiny-bert"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["adapter"]["loraplus_lr_ratio"] == 4
    assert "| LoRA+ ratio (B matrices' LR / learning_rate) | 4.0 |" in (out / "README.md").read_text()
    # Offline, the Hub id the adapter names for pushing cannot be loaded; predict failed ("neither a local model
    # folder nor a reachable Hub model") though the folder it was trained from is here, and is the very base.
    preds = tmp_path / "preds.csv"
    with caplog.at_level("WARNING"):
        assert main(["predict", "--model_name_or_path", str(out), "--input_file", str(csv_data[1]), "--output_file",
                     str(preds)]) == 0  # fmt: skip
    said = [r.getMessage() for r in caplog.records]
    assert (
        f"the adapter's base 'org/tiny-bert' cannot be loaded here; loading the adapter onto {str(tiny_bert_dir)!r}"
        in " ".join(said)
    )
    assert len(pd.read_csv(preds)) == len(pd.read_csv(csv_data[1]))


def test_a_prompt_tuning_adapter_leaves_room_in_the_position_table_for_its_virtual_tokens(
    tmp_path, tiny_bert_dir, csv_data, capsys
):
    """Prompt tuning puts num_virtual_tokens embeddings before the text, each taking a position: a row truncated at
    the position table (128 in the tiny BERT) failed inside the embeddings with a traceback, in training and in
    predict. The text's length is capped at the table less the virtual tokens now, in the run, the saved tokenizer
    and the card's quick start, and predict caps an adapter folder's recorded length the same way."""
    long_text = " ".join(f"great thing number {i}, not bad at all." for i in range(40))
    train = pd.read_csv(csv_data[0])
    train.loc[0, "text"] = long_text
    train.to_csv(tmp_path / "long.csv", index=False)
    out = tmp_path / "pt"
    prompt = ["--peft_method", "prompt_tuning", "--peft_config", "{num_virtual_tokens: 4}", "--max_seq_length", "128"]
    assert main([*train_argv(tiny_bert_dir, tmp_path / "long.csv", csv_data[1], out), *prompt]) == 0
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["max_seq_length"] == 124
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).model_max_length == 124
    pd.DataFrame({"text": [long_text]}).to_csv(tmp_path / "in.csv", index=False)
    argv = ["predict", "--model_name_or_path", str(out), "--input_file", str(tmp_path / "in.csv")]
    assert main([*argv, "--max_seq_length", "128", "--output_file", str(tmp_path / "out.csv")]) == 0
    expected = pd.read_csv(tmp_path / "out.csv").iloc[0]
    snippet = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    capsys.readouterr()
    exec(snippet.replace('"pt"', f'"{out}"').replace("I really enjoyed this!", long_text), {})
    (got,) = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["label"] == expected["predicted_label"]
    assert got["score"] == pytest.approx(expected["score"], abs=1e-5)


def test_an_adapter_peft_saved_on_a_labelled_classifier_is_evaluated_and_predicted_as_peft_loads_it(
    tmp_path, tiny_bert_dir
):
    """A LoRA PEFT saved itself (`model.save_pretrained`, no hf-transfer record) on a classifier base whose config
    names its labels: evaluate, predict, export and merge refused it ('records no label names ... use an adapter
    trained with hf-transfer train'), although AutoPeftModelForSequenceClassification loads it. They take the base's
    labels now, and predict gives the probabilities PEFT's own loading gives."""
    from peft import AutoPeftModelForSequenceClassification, LoraConfig, get_peft_model
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
    )  # fmt: skip
    base, adapter = tmp_path / "base", tmp_path / "adapter"
    BertForSequenceClassification(config).save_pretrained(base)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(base)
    peft_model = get_peft_model(
        BertForSequenceClassification.from_pretrained(base),
        LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]),
    )
    perturb_trainable(peft_model)
    peft_model.save_pretrained(adapter)
    texts = ["a fine film", "an awful one", "good", "bad"]
    pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos", "neg"]}).to_csv(tmp_path / "dev.csv", index=False)
    out = tmp_path / "predictions.csv"
    argv = ["--model_name_or_path", str(adapter), "--input_file", str(tmp_path / "dev.csv"), "--output_file", str(out)]
    assert main(["predict", *argv]) == 0
    reference = AutoPeftModelForSequenceClassification.from_pretrained(adapter).eval()
    batch = AutoTokenizer.from_pretrained(base)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**batch).logits.softmax(-1)
    predicted = pd.read_csv(out)
    torch.testing.assert_close(torch.tensor(predicted[["prob_neg", "prob_pos"]].values, dtype=torch.float32), expected)
    metrics = tmp_path / "metrics.json"
    argv = ["--model_name_or_path", str(adapter), "--validation_file", str(tmp_path / "dev.csv")]
    assert main(["evaluate", *argv, "--output_file", str(metrics)]) == 0
    right = (expected.argmax(-1) == torch.tensor([1, 0, 1, 0])).float().mean().item()
    assert json.loads(metrics.read_text())["accuracy"] == pytest.approx(right)


def test_an_adapter_run_and_its_evaluation_print_no_deprecation_from_inside_peft(tmp_path, tiny_bert_dir, tiny_data):
    """PEFT reads transformers' deprecated `is_gradient_checkpointing` when it wraps or loads an adapter: every LoRA
    run printed "FutureWarning: `is_gradient_checkpointing` is deprecated" twice, and `evaluate` once more."""
    import warnings

    from hf_transfer.cli import main

    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(train_argv(tiny_bert_dir, *tiny_data, out, "--peft_method", "lora")) == 0
        assert main(["evaluate", "--model_name_or_path", str(out), "--validation_file", str(tiny_data[1])]) == 0
    assert not [w for w in seen if "is_gradient_checkpointing" in str(w.message)]


def test_adalora_leaves_an_fp16_step_the_scaler_skipped_out_of_its_importance_scores():
    """Under fp16 the GradScaler skips a step whose gradients overflowed; AdaLoRA's callback still fed those inf/NaN
    gradients to `update_and_allocate`, whose importance scores then held NaN for good."""
    from types import SimpleNamespace

    from hf_transfer.adapters.peft_model import AdaLoraCallback

    updated = []
    weight = torch.nn.Parameter(torch.ones(2))
    model = SimpleNamespace(parameters=lambda: [weight],
                            base_model=SimpleNamespace(update_and_allocate=updated.append))  # fmt: skip
    state = SimpleNamespace(global_step=7)
    weight.grad = torch.tensor([1.0, float("inf")])
    AdaLoraCallback().on_optimizer_step(SimpleNamespace(fp16=True), state, None, model=model)
    assert updated == []
    weight.grad = torch.tensor([1.0, 2.0])
    AdaLoraCallback().on_optimizer_step(SimpleNamespace(fp16=True), state, None, model=model)
    assert updated == [7]
