import pytest
import torch
from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

from hf_transfer.core.layers import discover_layers
from hf_transfer.errors import ConfigError

SMALL = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "vocab_size": 99,
}
DECODER = {**SMALL, "num_key_value_heads": 1, "pad_token_id": 0}

# model_type -> (config kwargs, word/patch embedding parameter, classifier parameter)
ARCHITECTURES = {
    "bert": (SMALL, "bert.embeddings.word_embeddings.weight", "classifier.weight"),
    "roberta": (SMALL, "roberta.embeddings.word_embeddings.weight", "classifier.out_proj.weight"),
    "xlm-roberta": (SMALL, "roberta.embeddings.word_embeddings.weight", "classifier.out_proj.weight"),
    "distilbert": (
        {"n_layers": 2, "dim": 32, "n_heads": 2, "hidden_dim": 37, "vocab_size": 99},
        "distilbert.embeddings.word_embeddings.weight",
        "classifier.weight",
    ),
    "albert": (
        {**SMALL, "embedding_size": 16, "num_hidden_groups": 2},
        "albert.embeddings.word_embeddings.weight",
        "classifier.weight",
    ),
    "electra": (
        {**SMALL, "embedding_size": 16},
        "electra.embeddings.word_embeddings.weight",
        "classifier.out_proj.weight",
    ),
    "deberta-v2": (
        {**SMALL, "relative_attention": True, "position_buckets": 8, "pos_att_type": ["p2c", "c2p"]}
        | {"norm_rel_ebd": "layer_norm", "conv_kernel_size": 3},
        "deberta.embeddings.word_embeddings.weight",
        "classifier.weight",
    ),
    "mpnet": (SMALL, "mpnet.embeddings.word_embeddings.weight", "classifier.out_proj.weight"),
    "gte": (SMALL, "gte.embeddings.word_embeddings.weight", "classifier.weight"),
    "opt": (
        {**SMALL, "ffn_dim": 37, "word_embed_proj_dim": 16, "pad_token_id": 0},
        "model.decoder.embed_tokens.weight",
        "score.weight",
    ),
    "gpt2": (
        {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 64, "vocab_size": 99, "pad_token_id": 0},
        "transformer.wte.weight",
        "score.weight",
    ),
    "llama": (DECODER, "model.embed_tokens.weight", "score.weight"),
    "qwen2": (DECODER, "model.embed_tokens.weight", "score.weight"),
    "mistral": (DECODER, "model.embed_tokens.weight", "score.weight"),
    "vit": (
        {**SMALL, "image_size": 8, "patch_size": 4},
        "vit.embeddings.patch_embeddings.projection.weight",
        "classifier.weight",
    ),
}


def tiny_model(model_type: str, device: str = "meta", **overrides):
    kwargs = {**ARCHITECTURES[model_type][0], **overrides}
    config = AutoConfig.for_model(model_type, **kwargs)
    auto = AutoModelForImageClassification if model_type == "vit" else AutoModelForSequenceClassification
    with torch.device(device):
        return auto.from_config(config)


@pytest.mark.parametrize("model_type", list(ARCHITECTURES))
def test_discover_layers(model_type):
    model = tiny_model(model_type)
    layout = discover_layers(model)
    _, embedding, classifier = ARCHITECTURES[model_type]

    names = [name for name, _ in model.named_parameters()]
    assert sorted(layout.param_names) == sorted(names)  # every parameter exactly once
    assert layout.depth == 2
    assert all(layout.blocks)
    for index, (module_name, block) in enumerate(zip(layout.block_modules, layout.blocks, strict=True)):
        assert module_name.endswith(f".{index}")  # bottom -> top
        assert all(name.startswith(module_name + ".") or "conv" in name for name in block)
        assert isinstance(model.get_submodule(module_name), torch.nn.Module)
    assert classifier in layout.head
    assert embedding in layout.embeddings
    assert layout.group_of(embedding) == ("embeddings", None)
    assert layout.group_of(layout.blocks[1][0]) == ("block", 1)
    assert layout.group_of(classifier) == ("head", None)


@pytest.mark.parametrize(
    "model_type, embeddings, head",
    [
        ("bert", [], ["bert.pooler.dense.weight"]),
        ("electra", ["electra.embeddings_project.weight"], []),
        ("albert", ["albert.encoder.embedding_hidden_mapping_in.weight"], ["albert.pooler.weight"]),
        (
            "deberta-v2",
            ["deberta.encoder.rel_embeddings.weight", "deberta.encoder.LayerNorm.weight"],
            ["pooler.dense.weight"],
        ),
        ("gpt2", ["transformer.wpe.weight"], ["transformer.ln_f.weight"]),
        # The relative-position bias every block adds to its attention scores (registered after the blocks).
        ("mpnet", ["mpnet.encoder.relative_attention_bias.weight"], ["classifier.dense.weight"]),
        # Registered before the layers, run after them: GTE's pooler (its classifier reads it), OPT's final norm and
        # output projection.
        ("gte", [], ["gte.pooler.dense.weight"]),
        (
            "opt",
            ["model.decoder.embed_positions.weight", "model.decoder.project_in.weight"],
            ["model.decoder.final_layer_norm.weight", "model.decoder.project_out.weight"],
        ),
        ("llama", [], ["model.norm.weight"]),
        ("vit", ["vit.embeddings.cls_token"], ["vit.layernorm.weight"]),
    ],
)
def test_body_parameters_outside_blocks(model_type, embeddings, head):
    layout = discover_layers(tiny_model(model_type))
    assert set(embeddings) <= set(layout.embeddings)
    assert set(head) <= set(layout.head)


def test_deberta_conv_belongs_to_first_block():
    layout = discover_layers(tiny_model("deberta-v2"))
    assert "deberta.encoder.conv.conv.weight" in layout.blocks[0]


def test_xlm_roberta_classifier_registered_first_is_still_head():
    model = tiny_model("xlm-roberta")
    assert next(iter(model.named_parameters()))[0].startswith("classifier.")
    assert discover_layers(model).embeddings[0].startswith("roberta.embeddings.")


def test_albert_blocks_are_layer_groups():
    layout = discover_layers(tiny_model("albert", num_hidden_groups=1, num_hidden_layers=12, inner_group_num=2))
    assert layout.depth == 1  # one group, shared by all 12 layers; its two inner layers are one block
    assert layout.block_modules == ("albert.encoder.albert_layer_groups.0",)


def test_meta_and_real_model_have_the_same_layout():
    assert discover_layers(tiny_model("gpt2", device="cpu")) == discover_layers(tiny_model("gpt2"))


def test_peft_wrapped_model():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("bert", device="cpu"), LoraConfig(target_modules=["query", "value"], r=2))
    layout = discover_layers(model)
    assert layout.depth == 2
    assert any("lora_A" in name for name in layout.blocks[0])
    assert "base_model.model.bert.embeddings.word_embeddings.weight" in layout.embeddings
    assert all(not name.startswith("base_model.model.bert.encoder") for name in layout.head)


def test_unsupported_model_names_its_class():
    with pytest.raises(ConfigError, match="Sequential"):
        discover_layers(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))


def test_group_of_unknown_name():
    with pytest.raises(KeyError, match="nope"):
        discover_layers(tiny_model("bert")).group_of("nope")


def test_freeze_embeddings_freezes_mpnets_relative_position_bias():
    from hf_transfer.core.freezing import resolve_frozen_parameters

    layout = discover_layers(tiny_model("mpnet"))
    for options in ({"freeze_embeddings": True}, {"train_head_only": True}):
        assert "mpnet.encoder.relative_attention_bias.weight" in resolve_frozen_parameters(layout, **options)


@pytest.mark.parametrize("model_type", ["xlm", "flaubert"])
def test_xlm_layers_kept_in_parallel_lists_are_whole_blocks(model_type):
    # XLM and FlauBERT hold each layer in four lists (attentions, layer_norm1, ffns, layer_norm2): a block is all four,
    # not the attention alone with every feed-forward network counted as head.
    config = AutoConfig.for_model(model_type, emb_dim=32, n_layers=2, n_heads=2, vocab_size=99)
    with torch.device("meta"):
        layout = discover_layers(AutoModelForSequenceClassification.from_config(config))
    assert layout.depth == 2
    for index, block in enumerate(layout.blocks):
        for part in ("attentions", "layer_norm1", "ffns", "layer_norm2"):
            assert any(name.startswith(f"transformer.{part}.{index}.") for name in block), (index, part)
    assert all(name.startswith("sequence_summary.") for name in layout.head)


def test_blocks_are_the_list_as_long_as_num_hidden_layers():
    # MarkupLM's embeddings hold two lists of 50 xpath embeddings, longer than its encoder's list of layers.
    config = AutoConfig.for_model("markuplm", **SMALL)
    with torch.device("meta"):
        layout = discover_layers(AutoModelForSequenceClassification.from_config(config))
    assert layout.block_modules == ("markuplm.encoder.layer.0", "markuplm.encoder.layer.1")
    assert any("xpath_tag_sub_embeddings" in name for name in layout.embeddings)


CUSTOM_CONFIG = """from transformers import BertConfig


class CustomConfig(BertConfig):
    model_type = "my-custom-bert"
"""
CUSTOM_MODEL = """from transformers import BertForSequenceClassification

from .configuration_custom import CustomConfig


class CustomForSequenceClassification(BertForSequenceClassification):
    config_class = CustomConfig
"""


def test_a_model_of_custom_code_has_a_layout_with_trust_remote_code(tmp_path):
    # The freeze plan is resolved on the meta classifier before the weights load: with a repository's own code it
    # was built without trust_remote_code, so transformers asked on stdin and every train run of such a model (GTE
    # multilingual, nomic-embed, jina: custom code on the Hub) stopped with "has no sequence-classification head".
    import json

    from hf_transfer.core.models import meta_layout

    tiny_model("bert", device="cpu").config.save_pretrained(tmp_path)
    (tmp_path / "configuration_custom.py").write_text(CUSTOM_CONFIG)
    (tmp_path / "modeling_custom.py").write_text(CUSTOM_MODEL)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "my-custom-bert"
    config["auto_map"] = {
        "AutoConfig": "configuration_custom.CustomConfig",
        "AutoModelForSequenceClassification": "modeling_custom.CustomForSequenceClassification",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    layout = meta_layout(AutoConfig.from_pretrained(tmp_path, trust_remote_code=True))
    assert layout.depth == 2 and "bert.encoder.layer.0.output.dense.weight" in layout.blocks[0]


JAMBA = {
    **DECODER,
    "intermediate_size": 64,  # torch's grouped matmul of its experts needs 16-byte strides
    "attn_layer_period": 2,
    "attn_layer_offset": 1,
    "expert_layer_period": 2,
    "expert_layer_offset": 1,
    "num_experts": 2,
    "mamba_d_state": 16,
    "mamba_dt_rank": 8,
    "use_mamba_kernels": False,
}


def test_a_model_whose_layers_are_of_two_classes_has_a_layout_without_blocks_on_request():
    # Jamba's layers alternate a Mamba and an attention class: no list of identical layers. `train` used this layout's
    # error for every run, with no freeze option at all.
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model("jamba", **JAMBA))
    with pytest.raises(ConfigError, match="Cannot find the transformer blocks of JambaForSequenceClassification"):
        discover_layers(model)
    layout = discover_layers(model, need_blocks=False)
    assert layout.depth == 0 and layout.block_modules == ()
    assert layout.embeddings == ("model.embed_tokens.weight",)
    assert sorted(layout.param_names) == sorted(name for name, _ in model.named_parameters())
    assert {"score.weight", "model.final_layernorm.weight", "model.layers.1.self_attn.q_proj.weight"} <= set(
        layout.head
    )
