"""TransferTrainer: exact loss under gradient accumulation, freeze plans that hold, unfreezing that trains, LLRD."""

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, Trainer, TrainerCallback

from hf_transfer.train.arguments import TransferTrainingArguments
from hf_transfer.train.trainer import TransferTrainer


def tiny_model(seed=0, dropout=0.0, num_labels=3):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    return BertForSequenceClassification(config)


class _PadTokenizer:
    """Just enough of a tokenizer for DataCollatorWithPadding."""

    pad_token_id = 0
    padding_side = "right"
    model_input_names = ["input_ids", "attention_mask"]

    def pad(self, features, return_tensors="pt", **kwargs):
        width = max(len(f["input_ids"]) for f in features)
        ids = [f["input_ids"] + [0] * (width - len(f["input_ids"])) for f in features]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        out = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        if "labels" in features[0]:
            out["labels"] = torch.tensor([f["labels"] for f in features])
        return out


def tiny_dataset(n=32, seed=0, num_labels=3):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = int(torch.randint(3, 12, (1,), generator=g))
        ids = [1] + torch.randint(5, 100, (length,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": i % num_labels})
    return Dataset.from_list(rows)


def make_args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        learning_rate=0.1,
        optim="sgd",
        max_grad_norm=0.0,
        seed=0,
        disable_tqdm=True,
        num_train_epochs=1,
        dataloader_drop_last=True,
        lr_scheduler_type="constant",
    )
    defaults.update(kw)
    return TransferTrainingArguments(**defaults)


def run(trainer_cls, tmp_path, model=None, dataset=None, callbacks=None, trainer_kwargs=None, **kw):
    model = model or tiny_model()
    args = make_args(tmp_path, **kw)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=dataset or tiny_dataset(),
        data_collator=DataCollatorWithPadding(_PadTokenizer()),
        callbacks=callbacks,
        **(trainer_kwargs or {}),
    )
    trainer.train()
    return trainer


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_batch8_acc1_equals_batch4_acc2(tmp_path):
    a = run(TransferTrainer, tmp_path / "a", per_device_train_batch_size=8, gradient_accumulation_steps=1)
    b = run(TransferTrainer, tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    pa, pb = params(a.model), params(b.model)
    assert a.state.global_step == b.state.global_step == 4
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=2e-6, rtol=1e-5, msg=name)
    losses_a = [e["loss"] for e in a.state.log_history if "loss" in e]
    losses_b = [e["loss"] for e in b.state.log_history if "loss" in e]
    assert losses_a == pytest.approx(losses_b, rel=1e-5)


class _MeanPerMicroBatch(TransferTrainer):
    """transformers 4.x's rule: each micro-batch's own mean loss, divided by the accumulation steps."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return super().compute_loss(model, inputs) / self.args.gradient_accumulation_steps


def test_accumulation_is_exact_when_the_micro_batches_are_unequal(tmp_path):
    """With equal micro-batches (the test above: 32 rows, last batch dropped) "each micro-batch's mean ÷ accumulation
    steps" gives the exact rule's update, so that test cannot tell them apart. Here 30 rows leave a last optimizer
    step of micro-batches of 4 and 2 rows: only Σℓᵢ over the accumulated batch ÷ its 6 rows matches batch 8 × 1, and
    the per-micro-batch rule is shown to miss it on the same data."""
    data, uneven = tiny_dataset(n=30), {"dataloader_drop_last": False}
    a = run(TransferTrainer, tmp_path / "a", dataset=data, per_device_train_batch_size=8, **uneven)
    kw = {"dataset": data, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, **uneven}
    b = run(TransferTrainer, tmp_path / "b", **kw)
    per_micro_batch = run(_MeanPerMicroBatch, tmp_path / "c", **kw)
    pa, pb, pold = params(a.model), params(b.model), params(per_micro_batch.model)
    assert a.state.global_step == b.state.global_step == per_micro_batch.state.global_step == 4
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=2e-6, rtol=1e-5, msg=name)
    assert (pa["classifier.weight"] - pold["classifier.weight"]).abs().max() > 1e-4


def test_class_weighted_loss_is_exact_under_accumulation(tmp_path):
    """Σ wᵢ·ℓᵢ / Σ wᵢ over the whole accumulated batch: micro-batches of 4 hold different class mixes (labels i % 3),
    so normalising each micro-batch by its own weight would give other updates."""
    weighted = {"trainer_kwargs": {"class_weights": [0.5, 2.0, 3.0]}}
    a = run(TransferTrainer, tmp_path / "a", per_device_train_batch_size=8, gradient_accumulation_steps=1, **weighted)
    b = run(TransferTrainer, tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2, **weighted)
    plain = run(TransferTrainer, tmp_path / "c", per_device_train_batch_size=8, gradient_accumulation_steps=1)
    pa, pb, pc = params(a.model), params(b.model), params(plain.model)
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=2e-6, rtol=1e-5, msg=name)
    assert not torch.allclose(pa["classifier.weight"], pc["classifier.weight"], atol=1e-4)  # the weights do act


def test_class_weighted_evaluation_loss_is_the_sets_weighted_mean(tmp_path):
    """eval_loss with class weights is Σ wᵢ·ℓᵢ / Σ wᵢ over the whole set, whatever the evaluation batch: batches of 3
    of 10 rows hold different class mixes, and the mean of their own weighted means was another figure."""
    weights = [0.5, 2.0, 3.0]
    trainer = run(
        TransferTrainer, tmp_path / "a", per_device_train_batch_size=8, trainer_kwargs={"class_weights": weights}
    )
    evaluation = tiny_dataset(n=10, seed=1)
    trainer.args.dataloader_drop_last = False  # every row of the set is evaluated
    predictions = trainer.predict(evaluation)
    logits, labels = torch.as_tensor(predictions.predictions), torch.as_tensor(predictions.label_ids)
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weights)).item()
    batch_means = []
    for batch in (3, 10):
        trainer.args.per_device_eval_batch_size = batch
        assert trainer.evaluate(evaluation)["eval_loss"] == pytest.approx(expected, rel=1e-5), batch
        trainer.args.per_device_eval_batch_size = 3
    for start in range(0, 10, 3):  # what dividing each batch by its own weight gave
        chunk = slice(start, start + 3)
        loss = torch.nn.functional.cross_entropy(logits[chunk], labels[chunk], weight=torch.tensor(weights))
        batch_means += [loss.item()] * len(labels[chunk])
    assert sum(batch_means) / 10 != pytest.approx(expected, rel=1e-3)  # the case tells the two apart
    assert predictions.metrics["test_loss"] == pytest.approx(expected, rel=1e-5)


def test_stock_trainer_double_scales_bert_loss_under_accumulation(tmp_path):
    """Why TransferTrainer computes its own loss: stock Trainer's update differs with accumulation (SGD shows it)."""
    a = run(Trainer, tmp_path / "a", per_device_train_batch_size=8, gradient_accumulation_steps=1)
    b = run(Trainer, tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    w = "classifier.weight"
    start = tiny_model().state_dict()[w]
    delta_a = a.model.state_dict()[w] - start
    delta_b = b.model.state_dict()[w] - start
    assert not torch.allclose(delta_a, delta_b, atol=1e-4)


def test_frozen_parameters_bit_identical_and_trainable_ones_change(tmp_path):
    model = tiny_model(dropout=0.1)
    before = params(model)
    trainer = run(
        TransferTrainer,
        tmp_path,
        model=model,
        freeze_layers=1,
        freeze_embeddings=True,
        per_device_train_batch_size=8,
        optim="adamw_torch",
        learning_rate=1e-2,
    )
    after = params(trainer.model)
    frozen = [n for n in before if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    trainable = [n for n in before if n not in frozen]
    assert frozen and trainable
    for n in frozen:
        assert torch.equal(before[n], after[n]), n
        assert not trainer.model.get_parameter(n).requires_grad
    for n in trainable:
        assert not torch.equal(before[n], after[n]), n
    # Frozen blocks ran in eval mode during training: no dropout noise inside them.
    assert trainer.model.bert.encoder.layer[0].training is False
    assert trainer.model.bert.embeddings.training is False


class _Snapshot(TrainerCallback):
    def __init__(self):
        self.at_epoch_end = []

    def on_epoch_end(self, args, state, control, model=None, **kw):
        self.at_epoch_end.append(params(model))


def test_gradual_unfreezing_really_optimises_newly_unfrozen_blocks(tmp_path):
    model = tiny_model()
    before = params(model)
    snap = _Snapshot()
    trainer = run(
        TransferTrainer,
        tmp_path,
        model=model,
        callbacks=[snap],
        gradual_unfreezing=1,
        num_train_epochs=3,
        per_device_train_batch_size=8,
        optim="adamw_torch",
        learning_rate=1e-2,
    )
    block0, block1 = "bert.encoder.layer.0.output.dense.weight", "bert.encoder.layer.1.output.dense.weight"
    emb, head = "bert.embeddings.word_embeddings.weight", "classifier.weight"
    e0, e1, e2 = snap.at_epoch_end
    assert not torch.equal(e0[head], before[head])
    assert torch.equal(e0[block1], before[block1]) and torch.equal(e0[block0], before[block0])
    assert not torch.equal(e1[block1], e0[block1])  # top block released in epoch 1
    assert torch.equal(e1[block0], before[block0])
    assert not torch.equal(e2[block0], e1[block0])  # next block released in epoch 2
    assert torch.equal(e2[emb], before[emb])  # embeddings come last, after epoch 3
    assert trainer.model.get_parameter(block0).requires_grad


def test_layerwise_lr_decay_builds_parameter_groups(tmp_path):
    args = make_args(tmp_path, layerwise_lr_decay=0.5, learning_rate=1.0, optim="adamw_torch", weight_decay=0.01)
    trainer = TransferTrainer(
        model=tiny_model(),
        args=args,
        train_dataset=tiny_dataset(),
        data_collator=DataCollatorWithPadding(_PadTokenizer()),
    )
    optimizer = trainer.create_optimizer()
    lr_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = group["lr"]
    m = trainer.model
    assert lr_of[id(m.classifier.weight)] == 1.0
    assert lr_of[id(m.bert.encoder.layer[1].output.dense.weight)] == 0.5
    assert lr_of[id(m.bert.encoder.layer[0].output.dense.weight)] == 0.25
    assert lr_of[id(m.bert.embeddings.word_embeddings.weight)] == 0.125
    assert len(lr_of) == len(list(m.parameters()))


def test_extra_trainable_biases_get_no_weight_decay(tmp_path):
    """A distillation projection's biases were decayed with its matrices; Trainer leaves biases and norms undecayed."""
    from hf_transfer.core.freezing import FreezePlan
    from hf_transfer.core.layers import discover_layers
    from hf_transfer.train.trainer import parameter_groups

    model, projection = tiny_model(), torch.nn.Linear(4, 6)
    args = make_args(tmp_path, learning_rate=1.0, weight_decay=0.01)
    groups = parameter_groups(model, args, FreezePlan(discover_layers(model), frozenset()), [], projection)
    decay_of = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    assert decay_of[id(projection.weight)] == 0.01 and decay_of[id(projection.bias)] == 0.0


@pytest.mark.parametrize("rows", [1, 7, 8, 12, 16, 21, 24, 31])
@pytest.mark.parametrize("processes", [2, 3])
def test_rows_before_padding_are_the_rows_gather_for_metrics_keeps(rows, processes):
    """Each process's last evaluation batch, as accelerate shards it with `even_batches`: the leading rows that
    `rows_before_padding` counts are real rows of the set, and over every process they are the set's last rows,
    each once (the rest is padding, which gather_for_metrics drops)."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    from hf_transfer.train.trainer import rows_before_padding

    batch = 4
    total = batch * processes
    remainder = rows % total
    kept = []
    for index in range(processes):
        sampler = BatchSampler(SequentialSampler(range(rows)), batch_size=batch, drop_last=False)
        last = list(BatchSamplerShard(sampler, num_processes=processes, process_index=index))[-1]
        assert len(last) == batch
        kept += last[: rows_before_padding(len(last), index, remainder)]
    assert kept == list(range(rows - (remainder or total), rows))  # the last round's rows, each once
