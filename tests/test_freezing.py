import re

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from hf_transfer.core.freezing import (
    apply_freeze,
    count_parameters,
    layerwise_lr_groups,
    resolve_frozen_parameters,
    trainable_at_epoch,
    unfreezing_stages,
)
from hf_transfer.core.layers import ModelLayout, discover_layers
from hf_transfer.errors import ConfigError

LAYOUT = ModelLayout(
    embeddings=("emb.weight", "emb.norm.bias"),
    blocks=(("layer.0.w", "layer.0.norm.bias"), ("layer.1.w", "layer.1.norm.bias")),
    head=("pooler.w", "classifier.w"),
    block_modules=("layer.0", "layer.1"),
)
EMB, B0, B1, HEAD = (set(LAYOUT.embeddings), set(LAYOUT.blocks[0]), set(LAYOUT.blocks[1]), set(LAYOUT.head))


@pytest.fixture
def bert():
    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37, vocab_size=99
    )
    return BertForSequenceClassification(config)


def test_resolve_nothing_by_default():
    assert resolve_frozen_parameters(LAYOUT) == set()


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"freeze_embeddings": True}, EMB),
        ({"freeze_layers": 1}, B0),
        ({"freeze_layers": 2}, B0 | B1),
        ({"freeze_layers": 0}, set()),
        ({"freeze_layers": [1]}, B1),
        ({"freeze_layers": [0, 1], "freeze_embeddings": True}, EMB | B0 | B1),
        ({"freeze_patterns": [r"norm\.bias$"]}, {"emb.norm.bias", "layer.0.norm.bias", "layer.1.norm.bias"}),
        ({"freeze_patterns": ["^pooler", "^emb"]}, EMB | {"pooler.w"}),
        ({"train_head_only": True}, EMB | B0 | B1),
    ],
)
def test_resolve_frozen_parameters(kwargs, expected):
    assert resolve_frozen_parameters(LAYOUT, **kwargs) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"freeze_layers": 3}, r"freeze_layers=3, but the model has 2 blocks; give 0 to 2"),
        ({"freeze_layers": -1}, r"freeze_layers=-1"),
        ({"freeze_layers": [0, 2]}, r"contains 2, but the model has 2 blocks: indices must be in \[0, 1\]"),
        ({"freeze_layers": [-1]}, r"contains -1"),
        ({"freeze_patterns": ["attention"]}, r"'attention' matches no parameter.*'emb.weight'.*'classifier.w'"),
        ({"freeze_patterns": ["("]}, r"not a valid regex"),
    ],
)
def test_resolve_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_frozen_parameters(LAYOUT, **kwargs)


def test_unfreezing_stages_go_top_down_and_end_with_embeddings():
    assert unfreezing_stages(LAYOUT, set()) == [HEAD, HEAD | B1, HEAD | B1 | B0, HEAD | B1 | B0 | EMB]


def test_unfreezing_stages_never_unfreeze_permanently_frozen():
    frozen = B1 | {"emb.weight", "classifier.w"}
    stages = unfreezing_stages(LAYOUT, frozen)
    # The stage for block 1 adds nothing and is dropped.
    assert stages == [{"pooler.w"}, {"pooler.w"} | B0, {"pooler.w", "emb.norm.bias"} | B0]
    assert all(not stage & frozen for stage in stages)


def test_unfreezing_stages_everything_frozen():
    assert unfreezing_stages(LAYOUT, set(LAYOUT.param_names)) == [set()]


def test_trainable_at_epoch():
    stages = unfreezing_stages(LAYOUT, set())
    assert trainable_at_epoch(stages, 0, every=2) == HEAD
    assert trainable_at_epoch(stages, 1.5, every=2) == HEAD
    assert trainable_at_epoch(stages, 2, every=2) == HEAD | B1
    assert trainable_at_epoch(stages, 7, every=1) == set(LAYOUT.param_names)  # past the last stage
    with pytest.raises(ValueError, match="every"):
        trainable_at_epoch(stages, 0, every=0)


def test_apply_freeze_sets_requires_grad_and_counts(bert):
    layout = discover_layers(bert)
    frozen = resolve_frozen_parameters(layout, freeze_embeddings=True, freeze_layers=1)
    apply_freeze(bert, frozen)
    for name, param in bert.named_parameters():
        assert param.requires_grad == (name not in frozen)
    trainable, n_frozen = count_parameters(bert)
    assert n_frozen == sum(p.numel() for n, p in bert.named_parameters() if n in frozen)
    assert trainable + n_frozen == sum(p.numel() for p in bert.parameters())
    with pytest.raises(ValueError, match="not parameters"):
        apply_freeze(bert, {"bert.nope"})


def test_frozen_modules_stay_in_eval_mode_through_train(bert):
    layout = discover_layers(bert)
    apply_freeze(bert, resolve_frozen_parameters(layout, train_head_only=True))
    bert.train()
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 2]])}
    bert(**inputs)
    assert not bert.bert.embeddings.training and not bert.bert.embeddings.dropout.training
    assert not bert.bert.encoder.training and not bert.bert.encoder.layer[1].output.dropout.training
    assert bert.training and bert.dropout.training and bert.bert.pooler.training
    # With the head's own dropout off, nothing random is left: two forward passes in train mode agree.
    bert.dropout.p = 0.0
    torch.testing.assert_close(bert(**inputs).logits, bert(**inputs).logits, rtol=0, atol=0)
    apply_freeze(bert, set())  # control: the body's dropout is back on
    assert not torch.equal(bert(**inputs).logits, bert(**inputs).logits)


def test_neftune_noise_reaches_frozen_embeddings_in_training_only(bert):
    """NEFTune adds noise to the input embeddings' output while their module is in training mode. Frozen embeddings
    were kept in eval mode, so `neftune_noise_alpha` silently did nothing with freeze_embeddings or an adapter (the
    card still listed it). The embedding tables follow the model's mode now; the rest of the frozen body stays in
    eval mode (no dropout), and evaluation adds no noise."""
    from transformers.integrations.neftune import activate_neftune

    layout = discover_layers(bert)
    apply_freeze(bert, resolve_frozen_parameters(layout, freeze_embeddings=True, freeze_layers=2))
    for module in bert.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # the noise is all that is random
    inputs = {"input_ids": torch.tensor([[1, 5, 7, 2]])}
    bert.train()
    clean = bert(**inputs).logits
    assert not bert.bert.embeddings.training and bert.bert.embeddings.word_embeddings.training
    activate_neftune(bert, 5.0)
    assert not torch.equal(bert(**inputs).logits, clean)
    bert.eval()
    torch.testing.assert_close(bert(**inputs).logits, clean, rtol=0, atol=0)
    assert not bert.bert.embeddings.word_embeddings.training


def test_reapplying_unfreezes_and_restores_train_mode(bert):
    layout = discover_layers(bert)
    apply_freeze(bert, resolve_frozen_parameters(layout, freeze_embeddings=True, freeze_layers=2))
    bert.train()
    bert(input_ids=torch.tensor([[1, 2]]))
    assert not bert.bert.encoder.layer[1].training

    apply_freeze(bert, resolve_frozen_parameters(layout, freeze_embeddings=True))
    assert all(p.requires_grad for n, p in bert.named_parameters() if n not in layout.embeddings)
    assert bert.bert.encoder.layer[1].training and bert.bert.encoder.layer[0].attention.self.dropout.training
    bert(input_ids=torch.tensor([[1, 2]]))
    assert bert.bert.encoder.training and not bert.bert.embeddings.training
    assert list(bert._hf_transfer_freeze_hooks) == ["bert.embeddings"]

    apply_freeze(bert, set())
    assert not bert._hf_transfer_freeze_hooks and all(m.training for m in bert.modules())


def test_layerwise_lr_groups_decay():
    groups = layerwise_lr_groups(
        LAYOUT, list(LAYOUT.param_names), base_lr=1.0, gamma=0.5, weight_decay=0.01, no_decay=set()
    )
    assert [(g["lr"], sorted(g["names"])) for g in groups] == [
        (1.0, sorted(HEAD)),
        (0.5, sorted(B1)),
        (0.25, sorted(B0)),
        (0.125, sorted(EMB)),
    ]
    assert all(g["weight_decay"] == 0.01 for g in groups)


def test_layerwise_lr_groups_gamma_one_and_no_decay():
    no_decay = {name for name in LAYOUT.param_names if name.endswith("bias")}
    groups = layerwise_lr_groups(
        LAYOUT, list(LAYOUT.param_names), base_lr=2e-5, gamma=1.0, weight_decay=0.01, no_decay=no_decay
    )
    assert {g["lr"] for g in groups} == {2e-5}
    assert {(g["weight_decay"], frozenset(g["names"])) for g in groups} == {
        (0.01, frozenset(set(LAYOUT.param_names) - no_decay)),
        (0.0, frozenset(no_decay)),
    }


def test_layerwise_lr_groups_only_given_names_and_no_empty_groups():
    groups = layerwise_lr_groups(
        LAYOUT,
        ["classifier.w", "layer.0.norm.bias"],
        base_lr=1.0,
        gamma=0.5,
        weight_decay=0.1,
        no_decay={"layer.0.norm.bias"},
    )
    assert groups == [
        {"names": ["classifier.w"], "lr": 1.0, "weight_decay": 0.1},
        {"names": ["layer.0.norm.bias"], "lr": 0.25, "weight_decay": 0.0},
    ]


def test_frozen_blocks_in_a_module_list_stay_in_eval_mode():
    # GPT-2's blocks sit in `transformer.h` beside the trainable `ln_f`: with every block frozen, the list itself is
    # the largest frozen module, but a ModuleList is never called, so each block must carry the eval hook.
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99, pad_token_id=0))
    layout = discover_layers(model)
    apply_freeze(model, resolve_frozen_parameters(layout, train_head_only=True))
    model.train()
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 8]])}
    model(**inputs)
    assert not any(block.training for block in model.transformer.h)
    assert model.transformer.ln_f.training
    model.transformer.drop.p = 0.0  # parameterless, outside any frozen module: still in train mode
    torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)


def test_gpt2_embedding_dropout_is_off_with_the_embeddings_frozen():
    # GPT-2's embedding dropout is not inside a frozen module (it sits beside wte/wpe in `transformer`), yet its output
    # is the frozen embeddings' output: with them frozen it is off, as BERT's (inside `bert.embeddings`) is, and as the
    # frozen-feature cache computes the trunk. With trainable embeddings it stays on.
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from hf_transfer.core.freezing import FreezePlan

    torch.manual_seed(0)
    config = GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=99, pad_token_id=0, embd_pdrop=0.5)
    model = GPT2ForSequenceClassification(config)
    layout = discover_layers(model)
    inputs = {"input_ids": torch.tensor([[5, 6, 7, 8]])}
    for options in ({"freeze_embeddings": True, "freeze_layers": 2}, {"train_head_only": True}):
        FreezePlan.resolve(layout, **options).apply(model)
        model.train()
        torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
        assert not model.transformer.drop.training
    FreezePlan.resolve(layout, freeze_layers=2).apply(model)
    model.train()
    model(**inputs)
    assert model.transformer.drop.training
    assert not torch.equal(model(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("freeze_layers", [1, [0], 12])
def test_freeze_layers_on_albert_shared_layers_is_refused(freeze_layers):
    # ALBERT runs one layer group 12 times: "block 0" is every layer, so freeze_layers cannot mean the bottom layers.
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(
        vocab_size=99, embedding_size=16, hidden_size=32, num_attention_heads=2, intermediate_size=37
    )
    with torch.device("meta"):
        layout = discover_layers(AlbertForSequenceClassification(config))
    assert (layout.depth, layout.num_layers) == (1, 12)
    with pytest.raises(
        ConfigError, match=r"runs 12 layers .* on 1 block\(s\) .*freeze_patterns: \[albert_layer_groups\]"
    ):
        resolve_frozen_parameters(layout, freeze_layers=freeze_layers)
    assert resolve_frozen_parameters(layout, freeze_layers=0) == set()
    whole_encoder = resolve_frozen_parameters(layout, freeze_patterns=["albert_layer_groups"])
    assert whole_encoder == set(layout.blocks[0])


def test_freeze_layers_on_funnel_grouped_layers_is_refused_with_its_own_reason():
    # Funnel's blocks each hold several layers (not shared ones): the refusal says so, and its pattern is valid.
    from transformers import FunnelConfig, FunnelForSequenceClassification

    config = FunnelConfig(vocab_size=99, d_model=32, n_head=2, d_head=16, d_inner=37, block_sizes=[2, 2])
    with torch.device("meta"):
        layout = discover_layers(FunnelForSequenceClassification(config))
    assert (layout.depth, layout.num_layers) == (2, 4)
    with pytest.raises(ConfigError, match=r"runs 4 layers .* on 2 block\(s\) .*each holding several layers") as err:
        resolve_frozen_parameters(layout, freeze_layers=1)
    first = re.search(r"or \[(\S+)\] for the first", str(err.value)).group(1)
    assert resolve_frozen_parameters(layout, freeze_patterns=[first]) == set(layout.blocks[0])


@pytest.mark.parametrize(
    "options",
    [
        {"train_head_only": True},
        {"gradual_unfreezing": 1},
        {"layerwise_lr_decay": 0.8},
        {"linear_probe_epochs": 1},
    ],
)
def test_options_that_rank_blocks_under_the_head_are_refused_on_an_encoder_decoder(tmp_path, options):
    # BART's blocks are its encoder's: its whole decoder was head, trained by train_head_only at the undecayed LR.
    from transformers import BartConfig, BartForSequenceClassification

    from hf_transfer.train.arguments import TransferTrainingArguments
    from hf_transfer.train.trainer import freeze_plan_from_arguments

    config = BartConfig(
        vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
    )  # fmt: skip
    with torch.device("meta"):
        layout = discover_layers(BartForSequenceClassification(config))
    assert any(name.startswith("model.decoder.layers.") for name in layout.head)
    args = TransferTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **options)
    with pytest.raises(ConfigError, match=rf"{next(iter(options))} cannot apply to an encoder-decoder.*decoder"):
        freeze_plan_from_arguments(layout, args)
    # Freezing by name still works: the embeddings (shared, both position tables) and encoder blocks.
    plain = TransferTrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", freeze_embeddings=True, freeze_layers=1
    )
    frozen = freeze_plan_from_arguments(layout, plain).frozen
    assert "model.decoder.embed_positions.weight" in frozen and "model.encoder.layers.0.fc1.weight" in frozen


@pytest.mark.parametrize(
    "options",
    [
        {"freeze_patterns": ["."]},
        {"freeze_embeddings": True, "freeze_layers": 2, "freeze_patterns": ["^(pooler|classifier)"]},
        {"freeze_patterns": ["."], "gradual_unfreezing": 1},
    ],
)
def test_a_plan_that_freezes_everything_is_refused(options):
    # Trainer failed after the weights loaded: "element 0 of tensors does not require grad", or, with groups,
    # "optimizer got an empty parameter list".
    from hf_transfer.core.freezing import FreezePlan

    with pytest.raises(ConfigError, match=r"freeze all 8 parameters .*'classifier.w'.* nothing would train"):
        FreezePlan.resolve(LAYOUT, **options)
    assert FreezePlan.resolve(LAYOUT, freeze_patterns=["^(emb|layer)"]).will_train == HEAD


JAMBA_OPTIONS = [
    ({"freeze_layers": 1}, "freeze_layers needs"),
    ({"train_head_only": True, "layerwise_lr_decay": 0.9}, "train_head_only, layerwise_lr_decay need"),
    ({"gradual_unfreezing": 1}, "gradual_unfreezing needs"),
    (
        {"freeze_embeddings": True, "freeze_layers": 2, "cache_frozen_features": True},
        "freeze_layers, cache_frozen_features need",
    ),
]


@pytest.mark.parametrize("options, message", JAMBA_OPTIONS)
def test_a_model_without_blocks_trains_and_refuses_only_the_options_that_need_them(tmp_path, options, message):
    from test_layers import JAMBA
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hf_transfer.train.arguments import TransferTrainingArguments
    from hf_transfer.train.trainer import freeze_plan_from_arguments

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("jamba", **JAMBA))
    layout = discover_layers(model, need_blocks=False)

    def plan(**kwargs):
        args = TransferTrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", **kwargs)
        return freeze_plan_from_arguments(layout, args)

    assert plan().frozen == frozenset()
    assert plan(freeze_embeddings=True, freeze_patterns=["final_layernorm"]).frozen == {
        "model.embed_tokens.weight",
        "model.final_layernorm.weight",
    }
    with pytest.raises(ConfigError, match=rf"{message} the model's transformer blocks, but none were found.*'score"):
        plan(**options)


def test_train_runs_on_a_model_without_blocks(tmp_path):
    # Through the command line, on a saved tiny Jamba: it trains (it stopped with "Cannot find the transformer
    # blocks" even with no freeze option), frozen embeddings stay bit-identical, and freeze_layers is one line, exit 2.
    import pandas as pd
    from safetensors.torch import load_file
    from test_feature_cache import word_tokenizer
    from test_layers import JAMBA
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hf_transfer.cli import main

    tokenizer = word_tokenizer()
    config = AutoConfig.for_model("jamba", **{**JAMBA, "vocab_size": len(tokenizer)}, num_labels=2)
    config.id2label, config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "jamba")
    tokenizer.save_pretrained(tmp_path / "jamba")
    texts = [f"{w} thing number {i}" for i, w in enumerate(["good", "bad", "great", "awful"] * 4)]
    pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 8}).to_csv(tmp_path / "train.csv", index=False)
    argv = ["train", "--model_name_or_path", str(tmp_path / "jamba"), "--train_file", str(tmp_path / "train.csv")]
    argv += ["--max_steps", "2", "--learning_rate", "1e-2", "--use_cpu", "true", "--report_to", "none"]
    argv += ["--save_strategy", "no", "--disable_tqdm", "true", "--freeze_embeddings", "true"]
    assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    before = load_file(tmp_path / "jamba" / "model.safetensors")
    after = load_file(tmp_path / "out" / "model.safetensors")
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["score.weight"], after["score.weight"])
    assert not torch.equal(before["model.layers.0.mamba.in_proj.weight"], after["model.layers.0.mamba.in_proj.weight"])
    assert main([*argv, "--freeze_layers", "1", "--output_dir", str(tmp_path / "refused")]) == 2
    assert not (tmp_path / "refused").exists()


def test_albert_gradual_unfreezing_and_lr_decay_say_its_shared_block_counts_as_one(tmp_path, caplog):
    # ALBERT runs its one layer group 12 times: gradual unfreezing released all 12 layers at once and layer-wise LR
    # decay gave them one rate, while the card said "one more block from the top" and "block l from the top gets
    # lr·γ^l", as for a 12-block model. The run warns, and the card says how many layers share the block.
    from transformers import AlbertConfig, AlbertForSequenceClassification

    from hf_transfer.outputs.card_data import CardData
    from hf_transfer.outputs.card_rows import freeze_rows
    from hf_transfer.train.arguments import TransferTrainingArguments
    from hf_transfer.train.trainer import freeze_plan_from_arguments

    config = AlbertConfig(
        vocab_size=99, embedding_size=16, hidden_size=32, num_attention_heads=2, intermediate_size=37
    )
    with torch.device("meta"):
        layout = discover_layers(AlbertForSequenceClassification(config))
    args = TransferTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to="none", gradual_unfreezing=1, layerwise_lr_decay=0.8
    )
    with caplog.at_level("WARNING", logger="hf_transfer.core.freezing"):
        plan = freeze_plan_from_arguments(layout, args)
    assert "gradual_unfreezing and layerwise_lr_decay: this model runs 12 layers on 1 block(s)" in caplog.text
    assert len(plan.stages) == 3  # head, then the shared block (all 12 layers), then the embeddings
    freeze = {"depth": 1, "num_layers": 12, "gradual_unfreezing": 1, "layerwise_lr_decay": 0.8}
    rows = dict(freeze_rows(CardData(freeze=freeze)))
    shared = "12 layers run on 1 block(s) of weights: each block counts as one, all its layers together"
    assert shared in rows["gradual unfreezing"] and shared in rows["layer-wise LR decay γ"]
    bert = dict(freeze_rows(CardData(freeze={**freeze, "depth": 12})))
    assert "layers run on" not in bert["gradual unfreezing"] + bert["layer-wise LR decay γ"]


def test_the_card_says_whether_the_embeddings_below_frozen_blocks_trained():
    """`freeze_layers: N` freezes blocks, not the embeddings under them (they train at lr·γ^depth with LLRD): the card
    said only "blocks frozen: 1 (of 2)", so a reader could not tell whether the embeddings moved."""
    from hf_transfer.outputs.card_rows import freeze_text

    assert freeze_text({"freeze_layers": 1, "depth": 2}) == "blocks frozen: 1 (of 2); embeddings trained"
    both = freeze_text({"freeze_layers": 1, "depth": 2, "freeze_embeddings": True})
    assert both == "embeddings frozen; blocks frozen: 1 (of 2)"
    assert freeze_text({"depth": 2}) == "nothing frozen"
    gradual = {"freeze_layers": 2, "depth": 6, "gradual_unfreezing": 1, "unfreezing_stages": 6,
               "unfreezing_stages_reached": 2}  # fmt: skip
    assert "embeddings trained" not in freeze_text(gradual)  # the last stage: the schedule says whether they did
