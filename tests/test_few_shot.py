"""The few-shot route of `hf-transfer train`: the pair loss, the mean-pooling block that expresses the fitted head in
the standard classifier, the automatic choice and its record, and whole runs on tiny and real models."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hf_transfer.cli import main
from hf_transfer.train.few_shot import mix_bodies, pair_loss, supcon_loss
from hf_transfer.train.few_shot_choice import sentence_embedding_pooling
from hf_transfer.train.few_shot_head import (
    append_mean_pooling_block,
    binary_as_two_logits,
    classifier_inputs,
    feature_scale,
    fit_head,
    head_parts,
    mean_pool,
    mean_pooling_block,
    saved_mean_pooling_block,
)

GOOD = [
    "a wonderful film",
    "great acting and a fine story",
    "I loved every minute",
    "superb, moving and funny",
    "a delight from start to end",
    "brilliant direction",
    "warm and clever",
    "the best film this year",
]
BAD = [
    "a dreadful mess",
    "boring and far too long",
    "I hated every minute",
    "flat, dull and lifeless",
    "a waste of two hours",
    "clumsy direction",
    "cold and stupid",
    "the worst film this year",
]


def make_sentence_transformer(path, source, pooling="mean_tokens"):
    """`source` (a tiny BERT folder) saved at `path` with the files sentence-transformers writes: modules.json and the
    Pooling module's config."""
    from transformers import AutoModel, AutoTokenizer

    AutoModel.from_pretrained(source).save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir()
    modes = {f"pooling_mode_{m}": m == pooling for m in ("cls_token", "mean_tokens", "max_tokens")}
    (path / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return path


@pytest.fixture
def tiny_st(tmp_path, tiny_bert_dir):
    return make_sentence_transformer(tmp_path / "tiny-st", tiny_bert_dir)


def write_csv(path, texts, labels):
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return path


def tiny_classifier(tiny_bert_dir, num_labels=2):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=num_labels)
    return model.eval()


# --- the pair loss -----------------------------------------------------------------------------------------------


def test_pair_loss_is_zero_when_classes_are_orthogonal_and_tight():
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [0.0, 0.5]])
    assert pair_loss(embeddings, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-7)


def test_pair_loss_weighs_positive_and_negative_pairs_equally():
    # Rows 0 and 1 at 90°, row 2 at 45° to both; labels 0, 0, 1: one positive pair (cos 0) and two negative pairs
    # (cos √½ each): ((0 − 1)² + ½) / 2 = 0.75, whatever the pair counts.
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert pair_loss(embeddings, torch.tensor([0, 0, 1])).item() == pytest.approx(0.75, abs=1e-6)
    # One class only: the positive pairs alone; cos of rows 0/1 = 0, 0/2 = 1/1 = √½, 1/2 = √½.
    expected = ((0 - 1) ** 2 + 2 * (math.sqrt(0.5) - 1) ** 2) / 3
    assert pair_loss(embeddings, torch.tensor([1, 1, 1])).item() == pytest.approx(expected, abs=1e-6)


def test_pair_loss_pulls_same_labels_together():
    torch.manual_seed(0)
    embeddings = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    optimizer = torch.optim.SGD([embeddings], lr=0.5)
    start = pair_loss(embeddings, labels).item()
    for _ in range(50):
        optimizer.zero_grad()
        pair_loss(embeddings, labels).backward()
        optimizer.step()
    assert pair_loss(embeddings, labels).item() < start / 10


def test_supcon_loss_matches_its_definition():
    # Rows 0, 1 share a label, row 2 does not; cosines 0/1 = 0, 0/2 = 1/2 = √½. For row 0 the softmax over rows 1, 2
    # gives row 1 the share e^0 / (e^0 + e^(√½/τ)); row 1 the same by symmetry; row 2 has no positive: not an anchor.
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tau = 0.5
    share = 1 / (1 + math.exp(math.sqrt(0.5) / tau))
    assert supcon_loss(embeddings, torch.tensor([0, 0, 1]), tau).item() == pytest.approx(-math.log(share), abs=1e-5)
    # No two rows share a label: nothing to pull together, a zero that still carries a gradient.
    assert supcon_loss(embeddings, torch.tensor([0, 1, 2]), tau).item() == 0.0


def test_supcon_loss_pulls_same_labels_together():
    torch.manual_seed(0)
    embeddings = torch.randn(6, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    optimizer = torch.optim.Adam([embeddings], lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        supcon_loss(embeddings, labels, 0.1).backward()
        optimizer.step()
    # The floor: each row splits its softmax evenly between its two same-label rows, −log ½.
    assert supcon_loss(embeddings, labels, 0.1).item() == pytest.approx(math.log(2), abs=0.01)
    unit = torch.nn.functional.normalize(embeddings.detach(), dim=-1)
    cosine = unit @ unit.T
    within = torch.cat([cosine[:3, :3].flatten(), cosine[3:, 3:].flatten()])
    assert within.min() > cosine[:3, 3:].max() + 1.0  # the classes lie apart, each row nearer its own


def test_mix_bodies_interpolates_every_float_weight(tiny_bert_dir):
    model = tiny_classifier(tiny_bert_dir)
    pretrained = {k: v.clone() for k, v in model.base_model.state_dict().items()}
    with torch.no_grad():
        for parameter in model.base_model.parameters():
            parameter.add_(1.0)
    mix_bodies(model.base_model, pretrained, 0.25)
    for name, tensor in model.base_model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.allclose(tensor, pretrained[name] + 0.25, atol=1e-6), name
        else:
            assert torch.equal(tensor, pretrained[name]), name


def _prepared(texts, labels, pair_column=None):
    import datasets

    from hf_transfer.core.data import PreparedData

    names = sorted(set(labels))
    rows = datasets.Dataset.from_dict(
        {"text": texts, "labels": [names.index(n) for n in labels]},
        features=datasets.Features({"text": datasets.Value("string"), "labels": datasets.ClassLabel(names=names)}),
    )
    return PreparedData(datasets.DatasetDict({"train": rows}), names, "single_label_classification", {}, "text",
                        pair_column)  # fmt: skip


def test_label_template_rows_are_added_for_word_labels_only():
    import dataclasses

    import datasets

    from hf_transfer.train.few_shot_choice import add_label_template_rows

    prepared = _prepared(GOOD[:2] + BAD[:2], ["good", "good", "bad", "bad"])
    added, record = add_label_template_rows(prepared, "This sentence is {}.", 3)
    train = added.datasets["train"]
    assert len(train) == 10 and record["rows"] == 6
    assert train["text"][4:] == ["This sentence is bad."] * 3 + ["This sentence is good."] * 3
    assert train["labels"][4:] == [0, 0, 0, 1, 1, 1]  # bad, good: the label ids of the names
    assert train.features == prepared.datasets["train"].features
    for labels in (
        ["0", "0", "1", "1"],
        ["LABEL_0", "LABEL_0", "LABEL_1", "LABEL_1"],
        ["False", "False", "True", "True"],
    ):
        same, record = add_label_template_rows(_prepared(GOOD[:2] + BAD[:2], labels), "This sentence is {}.", 3)
        assert len(same.datasets["train"]) == 4 and record["rows"] == 0 and "not a word" in record["skipped"]
    same, record = add_label_template_rows(_prepared(GOOD[:2] + BAD[:2], ["good"] * 2 + ["bad"] * 2, "text2"),
                                           "This sentence is {}.", 3)  # fmt: skip
    assert len(same.datasets["train"]) == 4 and "sentence-pair" in record["skipped"]
    off = {"template": None, "rows": 0, "skipped": "few_shot_label_template none"}  # switched off: recorded
    assert add_label_template_rows(prepared, None, 3) == (prepared, off)
    assert add_label_template_rows(prepared, "It was {}.", 0)[1]["skipped"] == "few_shot_template_copies 0"
    # A split with a column of its own keeps it, empty for the added rows.
    extra = prepared.datasets["train"].add_column("source", ["a", "b", "c", "d"])
    with_column = dataclasses.replace(prepared, datasets=datasets.DatasetDict({"train": extra}))
    added, _ = add_label_template_rows(with_column, "This sentence is {}.", 1)
    assert added.datasets["train"]["source"] == ["a", "b", "c", "d", None, None]


# --- the head in the standard architecture -----------------------------------------------------------------------


def _batch(tokenizer, texts):
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def test_mean_pooling_block_puts_the_masked_mean_at_the_first_position(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = tiny_classifier(tiny_bert_dir)
    batch = _batch(tokenizer, ["short", "a much longer sentence with padding in the other row"])
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # the masked mean is tested
    with torch.no_grad():
        hidden = model.base_model(**batch).last_hidden_state
    mean = mean_pool(hidden, batch["attention_mask"])
    ideal = torch.nn.functional.layer_norm(mean, (mean.shape[-1],)) / math.sqrt(mean.shape[-1])
    parts = head_parts(model)
    append_mean_pooling_block(model, parts)
    assert model.config.num_hidden_layers == 3
    features = classifier_inputs(model, parts, [batch]) / feature_scale(32)
    assert torch.allclose(features, ideal, atol=2e-3), (features - ideal).abs().max()


@pytest.mark.parametrize("model_type", ["roberta", "electra"])
def test_the_head_reads_the_unit_norm_mean_embedding_whatever_the_activation(model_type, tiny_bert_dir):
    """ELECTRA's classification head applies GELU (slope 1/2 at zero) where BERT's pooler and RoBERTa's head apply
    tanh: its features had norm 1/2, not the unit norm the record and card state (the head's C meant another thing)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    small = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = AutoConfig.for_model(model_type, **small, pad_token_id=0, type_vocab_size=2, num_labels=2)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    batch = _batch(tokenizer, GOOD[:3] + BAD[:3])
    with torch.no_grad():
        mean = mean_pool(model.base_model(**batch).last_hidden_state, batch["attention_mask"])
    ideal = torch.nn.functional.layer_norm(mean, (32,)) / math.sqrt(32)
    parts = head_parts(model)
    append_mean_pooling_block(model, parts)
    features = classifier_inputs(model, parts, [batch]) / feature_scale(32, parts.slope)
    assert torch.allclose(features.norm(dim=-1), torch.ones(6), atol=1e-2), features.norm(dim=-1)
    assert torch.nn.functional.cosine_similarity(features, ideal).min() > 0.999


def test_the_saved_model_computes_the_fitted_head(tiny_bert_dir, tmp_path):
    """The route's own logits (the fitted head on its features) are what the saved, reloaded model outputs, and they
    are the head fitted on the tuned body's mean-pooled embeddings to within the construction's small residual."""
    import datasets
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    for num_labels in (2, 3):
        texts = GOOD + BAD
        labels = [i % num_labels for i in range(len(texts))]
        model = tiny_classifier(tiny_bert_dir, num_labels)
        with torch.no_grad():
            batch = _batch(tokenizer, texts)
            mean = mean_pool(model.base_model(**batch).last_hidden_state, batch["attention_mask"])
        rows = datasets.Dataset.from_dict({**tokenizer(texts), "labels": labels})
        facts = fit_head(model, rows, DataCollatorWithPadding(tokenizer), num_labels, c=10.0, batch_size=5)
        model.save_pretrained(tmp_path / f"saved{num_labels}")
        reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / f"saved{num_labels}").eval()
        assert reloaded.config.num_hidden_layers == 3
        with torch.no_grad():
            saved_logits = reloaded(**batch).logits.numpy()
        assert np.allclose(saved_logits, facts["logits"], atol=1e-4), np.abs(saved_logits - facts["logits"]).max()
        # The same head fitted on the exact mean-pooled features predicts the same classes.
        ideal = torch.nn.functional.layer_norm(mean, (32,)).numpy() / math.sqrt(32)
        exact = LogisticRegression(C=10.0, max_iter=1000).fit(ideal, labels)
        assert (exact.predict(ideal) == saved_logits.argmax(1)).mean() >= 0.9
        assert facts["training_accuracy"] == pytest.approx((saved_logits.argmax(1) == labels).mean())


def test_binary_head_as_two_logits_keeps_the_probabilities():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=20) > 0).astype(int)
    head = LogisticRegression().fit(x, y)
    coef, intercept = binary_as_two_logits(head.coef_, head.intercept_)
    logits = x @ coef.T + intercept
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(probabilities, head.predict_proba(x), atol=1e-9)


def test_unsupported_architectures_are_recognised(tmp_path):
    from transformers import AlbertConfig, AlbertForSequenceClassification, RobertaConfig

    from hf_transfer.core.models import meta_classifier

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    assert head_parts(meta_classifier(RobertaConfig(**small))) is not None
    assert head_parts(AlbertForSequenceClassification(AlbertConfig(embedding_size=16, **small))) is None


@pytest.mark.parametrize(
    "model_type,dense,final,activation",
    [
        ("bert", "bert.pooler.dense", "classifier", "tanh"),
        ("roberta", "classifier.dense", "classifier.out_proj", "tanh"),
        ("electra", "classifier.dense", "classifier.out_proj", "GELU"),
    ],
)
def test_the_card_names_the_layers_that_hold_the_head(model_type, dense, final, activation):
    """The card said "the pooler is 0.01·identity and the classifier holds the fitted head" for every architecture;
    RoBERTa and ELECTRA have no pooler (their classifier.dense takes its place, before GELU in ELECTRA's)."""
    from transformers import AutoConfig

    from hf_transfer.core.models import meta_classifier
    from hf_transfer.outputs.few_shot_card import few_shot_rows

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    parts = head_parts(meta_classifier(AutoConfig.for_model(model_type, **small)))
    assert (parts.dense_name, parts.final_name, parts.activation) == (dense, final, activation)
    head = {"kind": "logistic regression", "C": 1.0, "training_rows": 8, "training_accuracy": 1.0,
            "mean_pooling_block": 2, "num_hidden_layers": 3, "mean_scale": 1000.0, "pooler_scale": 0.01,
            "dense_layer": dense, "final_layer": final, "activation": activation}  # fmt: skip
    stored = dict(few_shot_rows({"decision": "on", "head": head}))["how the head is stored"]
    assert f"`{dense}` is 0.01·identity (before its {activation}) and `{final}` holds the fitted head" in stored
    assert ("pooler" in stored) == (model_type == "bert")
    old = {k: v for k, v in head.items() if k not in ("dense_layer", "final_layer", "activation")}
    stored = dict(few_shot_rows({"decision": "on", "head": old}))["how the head is stored"]
    assert "the dense layer before the final one is 0.01·identity and the final linear layer holds" in stored


def test_sentence_transformers_pooling_is_read_from_the_folder(tmp_path, tiny_bert_dir):
    assert sentence_embedding_pooling(str(make_sentence_transformer(tmp_path / "m", tiny_bert_dir))) == "mean_tokens"
    cls = make_sentence_transformer(tmp_path / "c", tiny_bert_dir, pooling="cls_token")
    assert sentence_embedding_pooling(str(cls)) == "cls_token"
    assert sentence_embedding_pooling(str(tiny_bert_dir)) is None
    # sentence-transformers 6 writes `"pooling_mode": "mean"` (or a list) in place of the pooling_mode_* flags: a
    # folder it saved was read as no sentence-transformers model, and `auto` never took the route on it.
    for mode, expected in (("mean", "mean_tokens"), (["cls"], "cls_token"), (["mean", "max"], None)):
        config = {"embedding_dimension": 32, "pooling_mode": mode, "include_prompt": True}
        (cls / "1_Pooling" / "config.json").write_text(json.dumps(config))
        assert sentence_embedding_pooling(str(cls)) == expected
    # A config that writes both forms of the same mode (a hand-edited or converted one) is still mean pooling.
    both = {"pooling_mode": "mean", "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}
    (cls / "1_Pooling" / "config.json").write_text(json.dumps(both))
    assert sentence_embedding_pooling(str(cls)) == "mean_tokens"


# --- whole runs --------------------------------------------------------------------------------------------------


def few_shot_argv(model, train, out, *extra):
    return ["train", "--model_name_or_path", str(model), "--train_file", str(train), "--output_dir", str(out),
            "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none", "--few_shot_body_epochs", "2",
            "--few_shot_batch_size", "8", *extra]  # fmt: skip


def test_auto_route_on_a_tiny_training_set(tiny_st, tmp_path, capsys, monkeypatch):
    """16 rows of a sentence-transformers model, no validation file: the route is chosen, printed and recorded, no
    validation split is carved, and the output is a standard classifier with the real label names. Its training
    curves name the loss they show: the body tuning's pair loss (it was called "train loss")."""
    from transformers import AutoModelForSequenceClassification, pipeline

    from hf_transfer.train import fit

    drawn, plot = [], fit.plot_training_curves
    monkeypatch.setattr(fit, "plot_training_curves", lambda *a, **k: drawn.append(k.get("loss_name")) or plot(*a, **k))
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    out = tmp_path / "out"
    assert main(few_shot_argv(tiny_st, train, out)) == 0
    assert drawn == ["body-tuning pair loss"] and (out / "training_curves.png").is_file()
    printed = capsys.readouterr().out
    assert "few_shot" in printed and "on (auto: 8 training rows per class" in printed
    record = json.loads((out / "hf_transfer_run.json").read_text())
    few_shot = record["few_shot"]
    assert few_shot["decision"].startswith("on (auto")
    assert few_shot["validation"]["held_out"] is False
    assert record["data"]["train"]["rows"] == 16 and "validation" not in record["data"]  # nothing carved out
    assert record["eval_metrics"] == {} and record["validation_report"] is None
    assert few_shot["body"]["steps"] == 4 and few_shot["body"]["pairs_per_step"] == 28
    # Epochs count the labelled rows, as few_shot_body_epochs 2 does: with 16 template rows beside the 16 labelled
    # ones, Trainer's passes over all 32 read 1.0.
    assert record["train_metrics"]["epoch"] == 2.0 and record["log_history"][-1]["epoch"] == 2.0
    assert few_shot["head"]["num_hidden_layers"] == 3
    card = (out / "README.md").read_text()
    assert "### Few-shot route" in card and "no held-out data" in card
    assert "`bert.pooler.dense` is 0.01·identity (before its tanh) and `classifier` holds the fitted head" in card
    assert "16 rows added to the labelled ones, 8 per class: 'This sentence is {}.' filled with bad, good" in card
    assert "| max_steps |" not in card  # the labelled rows' budget is the route's, not a max_steps the user gave
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["few_shot"] == "auto"
    config = json.loads((out / "config.json").read_text())
    assert set(config["id2label"].values()) == {"good", "bad"} and config["num_hidden_layers"] == 3
    assert "auto_map" not in config
    model = AutoModelForSequenceClassification.from_pretrained(out)
    classify = pipeline("text-classification", model=str(out))
    # The head was fitted on the 16 rows and 8 template rows per class ("This sentence is good.").
    assert few_shot["label_template"] == {"template": "This sentence is {}.", "copies_per_class": 8, "rows": 16,
                                          "labels": ["bad", "good"]}  # fmt: skip
    templates = ["This sentence is bad."] * 8 + ["This sentence is good."] * 8
    predictions = [p["label"] for p in classify(GOOD + BAD + templates)]
    assert set(predictions) <= {"good", "bad"}
    labels = ["good"] * 8 + ["bad"] * 8 + ["bad"] * 8 + ["good"] * 8
    accuracy = np.mean([p == t for p, t in zip(predictions, labels, strict=True)])
    assert accuracy == pytest.approx(few_shot["head"]["training_accuracy"], abs=1e-4)  # recorded to 4 places
    assert type(model).__name__ == "BertForSequenceClassification"


def test_route_keeps_max_train_samples(tiny_st, tmp_path):
    """`max_train_samples` caps the rows the route trains on: the validation split carved from train was put back
    after the cut (12 rows asked for gave 12 + 2 carved = 14 training rows, and 7 per class in the decision)."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good", "bad"] * 8)
    out = tmp_path / "out"
    extra = ("--max_train_samples", "12", "--few_shot_label_template", "none")
    assert main(few_shot_argv(tiny_st, train, out, *extra)) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["data"]["train"]["rows"] == 12 and sum(record["data"]["train"]["label_counts"].values()) == 12
    assert record["few_shot"]["decision"].startswith("on (auto: 6 training rows per class")
    assert record["few_shot"]["head"]["training_rows"] == 12


def test_fewer_rows_than_a_body_batch_train_with_dataloader_drop_last(tiny_st, tmp_path, caplog):
    """Thirty-seventh review: `dataloader_drop_last` with fewer training rows than `few_shot_batch_size` (6 rows per
    class, no label-name rows) dropped every batch, and Trainer stopped with a traceback after the weights loaded.
    Those few rows are kept, said in one line."""
    train = write_csv(tmp_path / "train.csv", GOOD[:3] + BAD[:3], ["good", "bad"] * 3)
    out = tmp_path / "out"
    extra = ("--few_shot_label_template", "none", "--dataloader_drop_last", "true", "--few_shot", "true")
    assert main(few_shot_argv(tiny_st, train, out, *extra)) == 0
    assert any("dataloader_drop_last ignored" in r.getMessage() for r in caplog.records)
    assert (out / "model.safetensors").is_file()


def test_three_classes_with_a_validation_file(tiny_st, tmp_path):
    texts = GOOD + BAD + [f"an average film, part {i}" for i in range(8)]
    labels = ["good"] * 8 + ["bad"] * 8 + ["neutral"] * 8
    train = write_csv(tmp_path / "train.csv", texts, labels)
    dev = write_csv(tmp_path / "dev.csv", texts[::2], labels[::2])
    out = tmp_path / "out"
    assert main([*few_shot_argv(tiny_st, train, out), "--validation_file", str(dev)]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["few_shot"]["validation"]["held_out"] is True
    assert record["eval_metrics"]["eval_samples"] == 12
    assert record["validation_report"]["confusion_matrix"] is not None
    assert record["label_names"] == ["bad", "good", "neutral"]
    # What evaluate reports on the saved model is what the run reported.
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--model_name_or_path", str(out), "--validation_file", str(dev),
                 "--output_file", str(metrics)]) == 0  # fmt: skip
    assert json.loads(metrics.read_text())["accuracy"] == pytest.approx(record["eval_metrics"]["eval_accuracy"])


@pytest.mark.parametrize(
    "extra,model_kind,reason",
    [
        ((), "plain", "not a sentence-transformers model"),
        (("--freeze_layers", "1"), "st", "freeze_layers is set"),
        (("--few_shot", "false"), "st", "switched off"),
        (("--few_shot_max_rows_per_class", "8"), "st", "not under few_shot_max_rows_per_class 8"),
    ],
)
def test_auto_leaves_other_runs_on_the_ordinary_route(extra, model_kind, reason, tiny_st, tiny_bert_dir, tmp_path):
    from hf_transfer.cli import parse_command_args
    from hf_transfer.train.few_shot_choice import decide_few_shot
    from hf_transfer.train.preflight import preflight

    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    model = tiny_st if model_kind == "st" else tiny_bert_dir
    model_args, data_args, adapter_args, training_args = parse_command_args(
        "train", few_shot_argv(model, train, tmp_path / "out", *extra)[1:]
    )
    decision = decide_few_shot(preflight(model_args, data_args, training_args), model_args, adapter_args,
                               training_args)  # fmt: skip
    assert not decision.on and reason in decision.reason
    # Passed over (printed and recorded) only where `auto` met data and a base the route is for.
    assert decision.passed_over == (reason == "freeze_layers is set")


def test_a_route_that_max_train_samples_chose_says_so(tiny_st, tmp_path):
    """A smoke run's `--max_train_samples` put a file of enough rows under the threshold: the route changed with a
    size flag, and the line said only the rows per class."""
    from hf_transfer.cli import parse_command_args
    from hf_transfer.train.few_shot_choice import decide_few_shot
    from hf_transfer.train.preflight import preflight

    labels = ["good", "bad"] * 12
    train = write_csv(tmp_path / "train.csv", [f"{(GOOD + BAD)[i % 16]} {i}" for i in range(24)], labels)
    reasons = {}
    for cut, threshold in (("8", "10"), ("20", "20")):
        argv = few_shot_argv(tiny_st, train, tmp_path / "out", "--few_shot", "auto")[1:]
        argv += ["--max_train_samples", cut, "--few_shot_max_rows_per_class", threshold]
        argv += ["--validation_file", str(train)]
        model_args, data_args, adapter_args, training_args = parse_command_args("train", argv)
        plan = preflight(model_args, data_args, training_args)
        decision = decide_few_shot(plan, model_args, adapter_args, training_args, data_args.max_train_samples)
        assert decision.on, decision.reason
        reasons[cut] = decision.reason
    assert "under max_train_samples 8 (the file has 12 rows per class on average; --few_shot false" in reasons["8"]
    assert "max_train_samples" not in reasons["20"]  # the file's 12 per class are under 20 too: no word of the cut


def test_max_steps_is_the_body_tuning_budget(tiny_st, tmp_path):
    """max_steps overrides few_shot_body_epochs as it overrides Trainer's epochs (it was ignored: 2 epochs ran)."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    out = tmp_path / "out"
    assert main([*few_shot_argv(tiny_st, train, out), "--max_steps", "1"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    body = record["few_shot"]["body"]
    assert body["steps"] == 1 == record["train_metrics"]["optimizer_steps"] and body["max_steps"] == 1
    assert body["epochs"] is None
    assert "max_steps 1 (in place of few_shot_body_epochs): 1 steps" in (out / "README.md").read_text()


def test_gradient_accumulation_is_recorded_in_the_pairs_per_step(tiny_st, tmp_path):
    """A step under gradient accumulation sums several batches of pairs: the record and card said one batch's pairs
    (28 for 8 sentences) where each step counted 2 × 28."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    out = tmp_path / "out"
    assert main([*few_shot_argv(tiny_st, train, out), "--max_steps", "1", "--gradient_accumulation_steps", "2"]) == 0
    body = json.loads((out / "hf_transfer_run.json").read_text())["few_shot"]["body"]
    assert body["steps"] == 1 and body["batches_per_step"] == 2 and body["pairs_per_step"] == 56
    card = (out / "README.md").read_text()
    assert "1 steps of 2 batches of 8 training rows (56 pairs of rows each, formed within each batch)" in card
    # The route's own warmup was in no record or card (a reviewer found it in training_args.bin): it is now.
    assert body["warmup_ratio"] == 0.1 and body["lr_scheduler_type"] == "linear"
    assert "(linear schedule, warmup over the first 10% of steps)" in card
    # Rebuilt without its card data, the card listed the Trainer settings the route replaces (lr 5e-05, 3 epochs).
    (out / "hf_transfer_card_data.json").unlink()
    assert main(["card", str(out)]) == 0
    rebuilt = (out / "README.md").read_text()
    assert (
        "| learning_rate |" not in card
        and "| learning_rate |" not in rebuilt
        and "| num_train_epochs |" not in rebuilt
    )
    assert "(linear schedule, warmup over the first 10% of steps)" in rebuilt


def test_label_template_rows_add_no_step_under_gradient_accumulation(tiny_st, tmp_path):
    """The template rows shrink the passes so that the steps are the labelled rows' (the card says they add none):
    with accumulation, Trainer rounded the shrunk passes' steps up (16 rows, batch 8, accumulation 2: 3 steps for 3
    epochs of the labelled rows, 4 with 8 template rows beside them)."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    steps = {}
    for copies in ("0", "4"):
        out = tmp_path / f"out{copies}"
        extra = ("--gradient_accumulation_steps", "2", "--few_shot_template_copies", copies)
        assert main([*few_shot_argv(tiny_st, train, out), "--few_shot_body_epochs", "3", *extra]) == 0
        record = json.loads((out / "hf_transfer_run.json").read_text())
        steps[copies] = record["few_shot"]["body"]["steps"]
        assert record["train_metrics"]["optimizer_steps"] == steps[copies]
        assert record["train_metrics"]["epoch"] == 3.0  # as the card says (2.5 was Trainer's passes, shrunk)
    assert steps == {"0": 3, "4": 3}


def test_trainer_fields_the_route_replaces_are_warned_about(tiny_st, tmp_path, caplog):
    """learning_rate, epochs and batch size given to a run on the route, and template copies with no template, were
    accepted and ignored, silently."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    extra = ["--max_steps", "1", "--learning_rate", "1e-3", "--num_train_epochs", "9"]
    extra += ["--few_shot_label_template", "none", "--few_shot_template_copies", "4"]
    # Evaluations, checkpoints and label smoothing were ignored silently too (the card listed the smoothing);
    # save_strategy: "no" (as few_shot.yaml sets it) is what the route does, and is not warned about.
    extra += [
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--save_strategy",
        "no",
        "--label_smoothing_factor",
        "0.3",
    ]
    with caplog.at_level("WARNING"):
        assert main([*few_shot_argv(tiny_st, train, tmp_path / "out"), *extra]) == 0
    messages = [r.getMessage() for r in caplog.records]
    ignored = sorted(m.split(" set but ignored")[0] for m in messages if "set but ignored" in m)
    expected = ["eval_strategy", "few_shot_template_copies", "label_smoothing_factor", "learning_rate"]
    assert ignored == [*expected, "num_train_epochs"]
    assert any("uses few_shot_learning_rate instead" in r.getMessage() for r in caplog.records)
    assert "| label_smoothing_factor | 0.3 |" not in (tmp_path / "out" / "README.md").read_text()


def test_resume_and_load_best_model_leave_auto_on_the_ordinary_route_and_refuse_true(tiny_st, tmp_path):
    """The route saves no checkpoint: a checkpoint in output_dir is the ordinary fine-tune's, which the route resumed
    from (its weights and optimizer) and recorded nothing of; load_best_model_at_end had no checkpoint to choose."""
    from hf_transfer.cli import parse_command_args
    from hf_transfer.errors import ConfigError
    from hf_transfer.train.few_shot_choice import decide_few_shot
    from hf_transfer.train.preflight import preflight

    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    out = tmp_path / "out"
    ordinary = ["--few_shot", "false", "--max_steps", "1", "--save_strategy", "steps", "--save_steps", "1"]
    assert main([*few_shot_argv(tiny_st, train, out), *ordinary]) == 0
    # A fresh run into the same folder (not a resume) must say it replaces the run there, or it is refused first.
    best = ["--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy", "epoch",
            "--overwrite_output_dir", "true"]  # fmt: skip
    for extra, reason in ((["--resume_from_checkpoint", "true"], "the route saves no checkpoint"),
                          (best, "load_best_model_at_end is set")):  # fmt: skip
        for setting in ("auto", "true"):
            argv = few_shot_argv(tiny_st, train, out, "--few_shot", setting, *extra)[1:]
            model_args, data_args, adapter_args, training_args = parse_command_args("train", argv)
            plan = preflight(model_args, data_args, training_args)
            if setting == "auto":
                decision = decide_few_shot(plan, model_args, adapter_args, training_args)
                assert not decision.on and reason in decision.reason
            else:
                with pytest.raises(ConfigError, match=reason):
                    decide_few_shot(plan, model_args, adapter_args, training_args)


def test_several_processes_leave_auto_on_the_ordinary_route_and_refuse_true(tiny_st, tmp_path, monkeypatch):
    """Under a multi-process launch (WORLD_SIZE 2), `auto` stays on the ordinary fine-tune and `true` is refused in
    one line that says how to start the route, before any weight loads."""
    from hf_transfer.cli import parse_command_args
    from hf_transfer.errors import ConfigError
    from hf_transfer.train.few_shot_choice import decide_few_shot
    from hf_transfer.train.preflight import preflight

    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    for setting in ("auto", "true"):
        parsed = parse_command_args(
            "train", few_shot_argv(tiny_st, train, tmp_path / "out", "--few_shot", setting)[1:]
        )
        model_args, data_args, adapter_args, training_args = parsed
        plan = preflight(model_args, data_args, training_args)
        monkeypatch.setenv("WORLD_SIZE", "2")  # as the launcher sets it (after parsing: no process group here)
        if setting == "auto":
            decision = decide_few_shot(plan, model_args, adapter_args, training_args)
            assert not decision.on and "several processes were launched" in decision.reason
            assert decision.passed_over_facts() == {"few_shot_passed_over": decision.line()}
        else:
            with pytest.raises(ConfigError, match="without `accelerate launch`, or with --num_processes 1"):
                decide_few_shot(plan, model_args, adapter_args, training_args)
        monkeypatch.delenv("WORLD_SIZE")
    assert not (tmp_path / "out").exists()


def test_a_few_shot_model_teaches_a_student(tiny_st, tiny_bert_dir, tmp_path):
    """`hf-transfer distill` takes the few-shot model as its teacher (alpha 1: the teacher's soft labels only)."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    teacher = tmp_path / "teacher"
    assert main(few_shot_argv(tiny_st, train, teacher)) == 0
    student = tmp_path / "student"
    argv = ["distill", "--teacher_model_name_or_path", str(teacher), "--model_name_or_path", str(tiny_bert_dir),
            "--train_file", str(train),
            "--validation_file", str(train), "--output_dir", str(student), "--alpha", "1", "--use_cpu", "true",
            "--num_train_epochs", "1", "--disable_tqdm", "true", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((student / "hf_transfer_run.json").read_text())
    assert record["distillation"]["alpha"] == 1
    assert json.loads((student / "config.json").read_text())["id2label"] == {"0": "bad", "1": "good"}


def test_a_student_cut_from_a_few_shot_teacher_keeps_its_mean_pooling_block(tiny_st, tmp_path, capsys):
    """The teacher's head reads the mean-pooled embedding its last block puts at [CLS]: `student_layers` without that
    block fed the head [CLS]'s own state (on SST-2 with MiniLM the student stayed at chance, 0.51, against 0.75 with
    the block). It is refused, also for a teacher fine-tuned further from the few-shot model (whose record says nothing
    of the route), and a student that keeps the block ends with it."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    few_shot = tmp_path / "few-shot"
    assert main(few_shot_argv(tiny_st, train, few_shot)) == 0
    tuned = tmp_path / "tuned"  # the few-shot model fine-tuned on: no few-shot record, the block still there
    assert main(["train", "--model_name_or_path", str(few_shot), "--train_file", str(train), "--output_dir",
                 str(tuned), "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none",
                 "--max_steps", "2", "--learning_rate", "1e-3"]) == 0  # fmt: skip
    record = json.loads((tuned / "hf_transfer_run.json").read_text())
    assert "few_shot" not in record and "not a sentence-transformers model" in record["few_shot_decision"]
    capsys.readouterr()
    for teacher in (few_shot, tuned):
        assert mean_pooling_block(AutoModelForSequenceClassification.from_pretrained(teacher)) == 2
        # ... and told from the saved weights alone, before any model loads
        assert saved_mean_pooling_block(str(teacher), AutoConfig.from_pretrained(teacher)) == 2
        student = tmp_path / f"student-of-{teacher.name}"
        argv = ["distill", "--teacher_model_name_or_path", str(teacher), "--student_layers", "[0]",
                "--train_file", str(train), "--validation_file", str(train), "--output_dir", str(student),
                "--use_cpu", "true", "--num_train_epochs", "1", "--disable_tqdm", "true",
                "--report_to", "none"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err  # read from the saved weights: before any model loads
        assert "Traceback" not in err and err.count("hf-transfer distill: error: ") == 1, err
        assert "ends with the few-shot route's mean-pooling block (block 2)" in err
        assert "Keep the block last: student_layers [0, 2]" in err
        assert not student.exists()
    student = tmp_path / "student"
    argv[argv.index("[0]")], argv[argv.index(str(tmp_path / "student-of-tuned"))] = "[0, 2]", str(student)
    assert main(argv) == 0
    kept = AutoModelForSequenceClassification.from_pretrained(student)
    assert kept.config.num_hidden_layers == 2 and mean_pooling_block(kept) == 1
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_st, num_labels=2)
    assert mean_pooling_block(plain) is None  # no trained block has zero queries and keys
    assert saved_mean_pooling_block(str(tiny_st), AutoConfig.from_pretrained(tiny_st)) is None


def test_hidden_loss_pairs_a_few_shot_teachers_body_blocks_with_the_students(tiny_st, tiny_bert_dir, tmp_path, capsys):
    """A few-shot teacher's last block (here block 2 of 3) outputs the mean-pooled embedding at every position, no
    token's state. The evenly spaced default map paired a separate 2-block student's last block with it ({0: 1, 1: 2}),
    pulling every token of that block towards the sentence mean; the body blocks now pair with the body blocks ({0: 0,
    1: 1}), a student cut from the teacher pairs the pooling block with itself, and a layer_map that pairs the pooling
    block with an ordinary one is refused before any model loads."""
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    teacher = tmp_path / "teacher"
    assert main(few_shot_argv(tiny_st, train, teacher)) == 0
    common = ["--teacher_model_name_or_path", str(teacher), "--train_file", str(train),
              "--validation_file", str(train), "--use_cpu", "true", "--max_steps", "1", "--disable_tqdm", "true",
              "--report_to", "none", "--hidden_loss_weight", "1"]  # fmt: skip
    separate = ["--model_name_or_path", str(tiny_bert_dir)]
    cached = ["--cache_teacher_logits", "true", "--teacher_cache_dir", str(tmp_path / "cache")]
    runs = {
        "separate": (separate, {"0": 0, "1": 1}),
        "separate-mean": (separate + ["--hidden_loss_pooling", "mean", *cached], {"0": 0, "1": 1}),
        "cut": (["--student_layers", "[0, 2]"], {"0": 0, "1": 2}),
    }
    for name, (extra, expected) in runs.items():
        out = tmp_path / name
        assert main(["distill", *common, "--output_dir", str(out), *extra]) == 0
        record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
        assert record["layer_map"] == expected, name
        assert math.isfinite(record["teacher_eval_accuracy"])
    capsys.readouterr()
    refused = {
        "[0, 2]": (["--model_name_or_path", str(tiny_bert_dir)], "teacher block 2 is the few-shot route's"),
        "[0, 1]": (["--student_layers", "[0, 2]"], "student block 1 is the few-shot route's mean-pooling block"),
    }
    for layer_map, (extra, needle) in refused.items():
        out = tmp_path / "refused"
        assert main(["distill", *common, "--output_dir", str(out), "--layer_map", layer_map, *extra]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("hf-transfer distill: error: ") == 1 and needle in err, err
        assert not out.exists()


def test_real_minilm_few_shot_beats_chance_on_sst2(tmp_path, minilm_path, data_root):
    """End to end on the real MiniLM: 16 SST-2 sentences per class, auto route, scored on 200 dev sentences."""
    import csv

    def read(split):
        with open(data_root / "sst2" / f"{split}.tsv", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))

    rows = [r for r in read("train") if len(r["sentence"].split()) >= 6]
    rng = np.random.default_rng(0)
    picked = [r for label in ("0", "1") for r in rng.choice([r for r in rows if r["label"] == label], 16, False)]
    train = write_csv(tmp_path / "train.csv", [r["sentence"] for r in picked], [int(r["label"]) for r in picked])
    dev_rows = read("dev")[:200]
    dev = write_csv(tmp_path / "dev.csv", [r["sentence"] for r in dev_rows], [int(r["label"]) for r in dev_rows])
    out = tmp_path / "out"
    argv = ["train", "--model_name_or_path", minilm_path, "--train_file", str(train), "--validation_file", str(dev),
            "--output_dir", str(out), "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none",
            "--class_names", "[negative, positive]"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["few_shot"]["decision"].startswith("on (auto")
    assert record["eval_metrics"]["eval_accuracy"] > 0.7


def test_a_test_file_without_validation_is_reported_and_nothing_is_said_of_a_validation_split(
    tiny_st, tiny_bert_dir, tmp_path, capsys, caplog
):
    """Found by a reviewer: with a test_file and no validation_file the card said the model was evaluated on "no
    held-out data" and showed no scores, though the run scored the test rows; repeated training rows drew a warning
    about validation rows that were put back into train; the hyperparameters table showed the body trainer's epochs
    (passes over labelled and template rows) beside the route's own; `few_shot_label_template none` left no word in
    the record. And a model that came out of the route was taken through it again by `few_shot: true` (a second
    pooling block), while `auto` on a base the route is not for passed in silence."""
    train = write_csv(tmp_path / "train.csv", (GOOD + BAD) * 2, (["good"] * 8 + ["bad"] * 8) * 2)  # each row twice
    test = write_csv(tmp_path / "test.csv", GOOD[::2] + BAD[::2], ["good"] * 4 + ["bad"] * 4)
    out = tmp_path / "out"
    argv = few_shot_argv(tiny_st, train, out, "--test_file", str(test), "--few_shot_label_template", "none")
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    assert "validation rows have the same input" not in caplog.text and "8 of the 8 test rows" in caplog.text
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["few_shot"]["label_template"] == {"template": None, "rows": 0,
                                                    "skipped": "few_shot_label_template none"}  # fmt: skip
    card = (out / "README.md").read_text()
    assert "Evaluated on 8 test rows (test.csv) (no validation_file: the route trained on every labelled row)." in card
    accuracy = record["test_metrics"]["test_accuracy"]
    assert f"| Accuracy | {accuracy:.4f} |" in card and "| metric | test |" in card
    assert (
        "| num_train_epochs |" not in card and "| label-name rows | none added: few_shot_label_template none |" in card
    )
    # The route's output again, forced: refused before any weight loads; with auto, said and recorded.
    again = few_shot_argv(out, train, tmp_path / "again", "--few_shot", "true")
    assert main(again) == 2
    assert "the model came out of the few-shot route (block 2 is its mean-pooling block)" in capsys.readouterr().err
    assert not (tmp_path / "again").exists()
    plain = tmp_path / "plain"
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert main(few_shot_argv(tiny_bert_dir, train, plain, "--max_steps", "1")) == 0
    said = [r.getMessage() for r in caplog.records if "few-shot route off (auto" in r.getMessage()]
    assert len(said) == 1 and "not a sentence-transformers model with mean pooling" in said[0]
    assert (
        "not a sentence-transformers model"
        in json.loads((plain / "hf_transfer_run.json").read_text())["few_shot_decision"]
    )


def test_body_tuning_runs_in_the_mixed_precision_asked_for(tiny_st, tmp_path, monkeypatch):
    """The pair loss called the body alone, which skips the autocast wrapping the model's forward: `--bf16 true`
    tuned it in fp32 while the record said bf16. Every linear layer run in training mode records its output dtype."""
    seen, forward = set(), torch.nn.Linear.forward

    def recording(self, x):
        out = forward(self, x)
        if self.training:
            seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", recording)
    train = write_csv(tmp_path / "train.csv", GOOD + BAD, ["good"] * 8 + ["bad"] * 8)
    assert main([*few_shot_argv(tiny_st, train, tmp_path / "out"), "--max_steps", "1", "--bf16", "true"]) == 0
    assert seen == {torch.bfloat16}


def test_body_tuning_averages_a_short_last_accumulation_window_over_its_own_batches(tmp_path, monkeypatch):
    """The pair loss was divided by gradient_accumulation_steps: an epoch whose last window holds fewer batches (12
    rows, batch 4, accumulation 2: windows of 2 batches, then 1) gave that step half its weight (logged loss 0.5
    where every batch's loss was 1.0, and so half its gradient)."""
    from test_trainers import _PadTokenizer, make_args, tiny_dataset, tiny_model
    from transformers import DataCollatorWithPadding

    from hf_transfer.train import few_shot

    monkeypatch.setattr(few_shot, "body_loss", lambda args, embedded, labels: embedded.sum() * 0.0 + 1.0)
    args = make_args(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    args.dataloader_drop_last = False
    trainer = few_shot.FewShotTrainer(
        model=tiny_model(),
        args=args,
        train_dataset=tiny_dataset(n=12),
        data_collator=DataCollatorWithPadding(_PadTokenizer()),
    )
    trainer.train()
    assert [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e] == [(1, 1.0), (2, 1.0)]
