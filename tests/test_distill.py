"""DistillationTrainer and `hf-transfer distill`: cached == online, exact accumulation, an untouched teacher, the
logit cache's keys and integrity, different tokenizers, hidden-state distillation, ensembles, and the bad-input
contract, on tiny models, plus one end-to-end run on the real MiniLM."""

import json
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors import safe_open
from test_trainers import _PadTokenizer, make_args, params, tiny_dataset, tiny_model

from hf_transfer.cli import main
from hf_transfer.core import memory
from hf_transfer.core.caching import fingerprint_model, fingerprint_texts
from hf_transfer.distill.arguments import DistillationArguments
from hf_transfer.distill.losses import topk_probabilities
from hf_transfer.distill.teachers import load_or_build_logit_cache, logits_to_columns
from hf_transfer.distill.trainer import PROJECTIONS_FILE, DistillationCollator, DistillationTrainer
from hf_transfer.errors import ConfigError

# --- the trainer, on tiny models -------------------------------------------------------------------------------------


def teacher_logits_for(teacher, dataset):
    teacher.eval()
    with torch.no_grad():
        return [teacher(input_ids=torch.tensor([row["input_ids"]])).logits[0].tolist() for row in dataset]


def distill_run(tmp_path, *, cached, seed=0, teacher=None, dataset=None, distill=None, layer_map=None, **kw):
    teacher = teacher or tiny_model(seed=1)
    dataset = dataset or tiny_dataset()
    if cached and "teacher_logits_0" not in dataset.column_names:
        dataset = dataset.add_column("teacher_logits_0", teacher_logits_for(teacher, dataset))
    distill = distill or DistillationArguments(teacher_model_name_or_path="t", alpha=0.7, temperature=2.0)
    kw.setdefault("remove_unused_columns", False)  # the cached teacher columns are not model inputs
    trainer = DistillationTrainer(
        model=tiny_model(seed=seed),
        args=make_args(tmp_path, **kw),
        train_dataset=dataset,
        data_collator=DistillationCollator(_PadTokenizer()),
        distill_args=distill,
        teachers=[] if cached else [teacher],
        num_teachers=1,
        layer_map=layer_map,
    )
    trainer.train()
    return trainer


def losses(trainer, key="loss"):
    return [e[key] for e in trainer.state.log_history if key in e]


def test_cached_teacher_logits_give_the_online_loss_and_weights(tmp_path):
    online = distill_run(tmp_path / "online", cached=False, per_device_train_batch_size=8)
    cached = distill_run(tmp_path / "cached", cached=True, per_device_train_batch_size=8)
    assert losses(online) == pytest.approx(losses(cached), rel=1e-5)
    assert losses(online, "loss_kd") == pytest.approx(losses(cached, "loss_kd"), rel=1e-3, abs=1e-4)
    for name, value in params(online.model).items():
        torch.testing.assert_close(value, params(cached.model)[name], atol=1e-5, rtol=1e-4, msg=name)


def test_distillation_batch8_acc1_equals_batch4_acc2(tmp_path):
    a = distill_run(tmp_path / "a", cached=False, per_device_train_batch_size=8, gradient_accumulation_steps=1)
    b = distill_run(tmp_path / "b", cached=False, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    assert a.state.global_step == b.state.global_step == 4
    for name, value in params(a.model).items():
        torch.testing.assert_close(value, params(b.model)[name], atol=2e-6, rtol=1e-5, msg=name)


def test_teacher_is_untouched_unwrapped_and_gradient_free(tmp_path):
    teacher = tiny_model(seed=1)
    before = params(teacher)
    trainer = distill_run(tmp_path, cached=False, teacher=teacher, per_device_train_batch_size=8)
    assert type(trainer.teachers[0]).__name__ == "BertForSequenceClassification"  # not DDP-wrapped
    assert not trainer.teachers[0].training
    for name, value in trainer.teachers[0].named_parameters():
        assert not value.requires_grad and value.grad is None
        assert torch.equal(value, before[name]), name
    initial = params(tiny_model())
    assert any(not torch.equal(value, initial[name]) for name, value in params(trainer.model).items())


def test_alpha_zero_trains_exactly_like_transfer_trainer(tmp_path):
    from transformers import DataCollatorWithPadding

    from hf_transfer.train.trainer import TransferTrainer

    distill = DistillationArguments(teacher_model_name_or_path="t", alpha=0.0)
    a = distill_run(tmp_path / "a", cached=False, distill=distill, per_device_train_batch_size=8)
    b = TransferTrainer(
        model=tiny_model(seed=0),
        args=make_args(tmp_path / "b", per_device_train_batch_size=8),
        train_dataset=tiny_dataset(),
        data_collator=DataCollatorWithPadding(_PadTokenizer()),
    )
    b.train()
    for name, value in params(a.model).items():
        assert torch.equal(value, params(b.model)[name]), name


def test_topk_cache_with_every_label_equals_full_logits():
    logits = torch.randn(5, 4)
    columns = logits_to_columns(logits.numpy(), top_k=4)
    assert set(columns) == {"teacher_logits"}  # k >= labels keeps everything
    columns = logits_to_columns(logits.numpy(), top_k=2)
    values, indices = (
        torch.from_numpy(columns["teacher_topk_values"]),
        torch.from_numpy(columns["teacher_topk_indices"]),
    )
    assert torch.equal(indices[:, 0], logits.argmax(-1))
    probs = topk_probabilities(values, indices, 4, temperature=2.0)
    assert torch.allclose(probs.sum(-1), torch.ones(5)) and (probs > 0).sum(-1).eq(2).all()
    full = topk_probabilities(logits, torch.arange(4).expand(5, 4), 4, temperature=2.0)
    torch.testing.assert_close(full, torch.softmax(logits / 2.0, -1))


def test_collator_pads_each_tokenizer_group_and_stacks_cached_columns():
    features = [
        {"input_ids": [1, 2, 3], "labels": 0, "teacher0_input_ids": [1, 9], "teacher_logits_0": [0.1, 0.2]},
        {"input_ids": [1, 2], "labels": 1, "teacher0_input_ids": [1, 9, 9, 9], "teacher_logits_0": [0.3, 0.4]},
    ]
    batch = DistillationCollator(_PadTokenizer(), {"teacher0_": _PadTokenizer()})(features)
    assert batch["input_ids"].shape == (2, 3) and batch["teacher0_input_ids"].shape == (2, 4)
    assert batch["teacher0_attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["teacher_logits_0"].dtype == torch.float32 and batch["teacher_logits_0"].shape == (2, 2)


# --- the cache and fingerprints --------------------------------------------------------------------------------------


def test_logit_cache_hits_then_detects_corruption_and_rebuilds(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return torch.arange(12, dtype=torch.float32).view(6, 2).numpy()

    first, info = load_or_build_logit_cache(tmp_path, "k1", 6, build)
    expected = first["teacher_logits"][:]
    assert not info["hit"] and len(calls) == 1 and expected[5] == [10.0, 11.0]
    again, info = load_or_build_logit_cache(tmp_path, "k1", 6, build)
    assert info["hit"] and len(calls) == 1 and again["teacher_logits"][:] == expected
    arrow = next((tmp_path / "k1").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-16])  # truncated
    rebuilt, info = load_or_build_logit_cache(tmp_path, "k1", 6, build)
    assert not info["hit"] and len(calls) == 2 and rebuilt["teacher_logits"][:] == expected
    _, info = load_or_build_logit_cache(tmp_path, "k2", 6, build)  # another key: another cache
    assert not info["hit"] and len(calls) == 3
    assert not list(tmp_path.glob("*.tmp-*"))


def test_a_cache_folder_that_cannot_be_written_is_one_line_and_a_damaged_entry_removed_twice_is_no_crash(
    tmp_path, monkeypatch
):
    """A cache folder given by flag on a read-only mount failed the run with a traceback (mkdir of the build folder)
    once the models had loaded; an entry it already holds is still read. Two runs that found the same entry damaged
    removed it at the same moment, and one crashed in rmtree (FileNotFoundError)."""
    from pathlib import Path

    import hf_transfer.core.caching as caching
    from hf_transfer.errors import ConfigError

    def build():
        return torch.arange(12, dtype=torch.float32).view(6, 2).numpy()

    load_or_build_logit_cache(tmp_path, "kept", 6, build)
    monkeypatch.setattr(caching, "can_write_in", lambda folder: False)  # what a read-only mount answers
    _, info = load_or_build_logit_cache(tmp_path, "kept", 6, build)
    assert info["hit"]
    with pytest.raises(ConfigError, match="cache folder .* cannot be written .read-only, or no permission"):
        load_or_build_logit_cache(tmp_path, "new", 6, build)
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()

    arrow = next((tmp_path / "kept").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:-16])
    rename = Path.rename

    def removed_by_the_other_run(self, target):  # it renamed (or removed) the damaged entry first
        import shutil

        shutil.rmtree(self)
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", removed_by_the_other_run)
    rebuilt, info = load_or_build_logit_cache(tmp_path, "kept", 6, build)
    assert not info["hit"] and rebuilt["teacher_logits"][:][5] == [10.0, 11.0]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_a_second_run_wanting_a_cache_being_built_waits_and_reads_it(tmp_path, caplog):
    """Two runs started together (seeds side by side) both built the same entry, each spending the build time; the
    second now waits for the first's build, says so, and reads it."""
    import threading

    started, release, calls = threading.Event(), threading.Event(), []

    def slow_build():
        calls.append("first")
        started.set()
        release.wait(timeout=30)
        return torch.arange(12, dtype=torch.float32).view(6, 2).numpy()

    def second_build():
        calls.append("second")
        return torch.zeros(6, 2).numpy()

    results = {}

    def run(name, build):
        results[name] = load_or_build_logit_cache(tmp_path, "k", 6, build)

    first = threading.Thread(target=run, args=("a", slow_build))
    first.start()
    assert started.wait(timeout=30)
    second = threading.Thread(target=run, args=("b", second_build))
    with caplog.at_level("WARNING"):
        second.start()
        second.join(timeout=2)
        assert second.is_alive()  # waiting for the first build
        release.set()
        first.join(timeout=30)
        second.join(timeout=30)
    assert calls == ["first"] and not results["a"][1]["hit"] and results["b"][1]["hit"]
    assert results["b"][0]["teacher_logits"][:][5] == [10.0, 11.0]
    assert "another run is building the teacher-logit cache k; waiting to use it." in caplog.text


def test_a_cache_hit_reads_sizes_and_times_and_hashes_only_a_file_touched_since(tmp_path, monkeypatch):
    """A hit hashed every byte of the cache again (1 to 4 s for SST-2's 693 MB feature cache, on each hit and on
    each search trial). A file with the size and time its build recorded is taken as it is; a copy (new time, same
    bytes) is hashed and taken; a cache written before sizes and times were kept is hashed as before."""
    import shutil

    from hf_transfer.core import caching

    def build():
        return torch.arange(12, dtype=torch.float32).view(6, 2).numpy()

    load_or_build_logit_cache(tmp_path / "a", "k1", 6, build)
    hashed = []
    real = caching._sha256
    monkeypatch.setattr(caching, "_sha256", lambda path: hashed.append(path.name) or real(path))
    assert load_or_build_logit_cache(tmp_path / "a", "k1", 6, build)[1]["hit"] and hashed == []
    shutil.copytree(tmp_path / "a", tmp_path / "b", copy_function=shutil.copy)  # new modification times
    assert load_or_build_logit_cache(tmp_path / "b", "k1", 6, build)[1]["hit"] and hashed
    meta_path = tmp_path / "a" / "k1" / caching.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["files"] = {name: entry["sha256"] for name, entry in meta["files"].items()}  # the older meta.json
    meta_path.write_text(json.dumps(meta))
    hashed.clear()
    assert load_or_build_logit_cache(tmp_path / "a", "k1", 6, build)[1]["hit"] and hashed


def test_fingerprints_change_with_weights_and_data():
    model = tiny_model(seed=0)
    before = fingerprint_model(model)
    assert fingerprint_model(tiny_model(seed=0)) == before
    with torch.no_grad():
        model.classifier.bias[0] += 1e-6
    assert fingerprint_model(model) != before
    assert fingerprint_texts(["a", "b"]) != fingerprint_texts(["b", "a"])
    assert fingerprint_texts(["ab", "c"]) != fingerprint_texts(["a", "bc"])
    assert fingerprint_texts(["a"], ["b"]) != fingerprint_texts(["a"])


def test_tokenizer_fingerprint_ignores_what_the_last_call_asked_for(tiny_bert_dir):
    """A fast tokenizer keeps the truncation and padding of its last call in its definition: the augmentation's
    calls (no truncation) changed the teacher-logit cache key, so the run that built the augmented rows and the runs
    (or DDP ranks) that read them back used two keys and built the teacher pass twice."""
    from transformers import AutoTokenizer

    from hf_transfer.core.caching import fingerprint_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    fresh = fingerprint_tokenizer(tokenizer)
    tokenizer(["a good"], add_special_tokens=False)
    assert fingerprint_tokenizer(tokenizer) == fresh
    tokenizer(["a good"], truncation=True, max_length=16, padding="max_length")
    assert fingerprint_tokenizer(tokenizer) == fresh
    tokenizer.add_tokens(["qwertyuiop"])  # what the ids are does count
    assert fingerprint_tokenizer(tokenizer) != fresh


def test_text_fingerprint_reads_a_lazy_column_in_chunks_and_matches_the_list(monkeypatch):
    import datasets

    from hf_transfer.core import caching

    texts, pairs = [f"text {i}" for i in range(7)], [f"pair {i}" for i in range(7)]
    expected = fingerprint_texts(texts), fingerprint_texts(texts, pairs)
    monkeypatch.setattr(caching, "FINGERPRINT_CHUNK_ROWS", 3)  # chunk boundaries inside the rows
    rows = datasets.Dataset.from_dict({"t": texts, "p": pairs})
    assert fingerprint_texts(rows["t"]) == fingerprint_texts(texts) == expected[0]
    assert fingerprint_texts(rows["t"], rows["p"]) == expected[1]
    assert fingerprint_texts(rows.select([1, 0, *range(2, 7)])["t"]) != expected[0]  # order counts across chunks


# --- the command, on tiny models -------------------------------------------------------------------------------------


@pytest.fixture
def tiny_data(tmp_path):
    import pandas as pd

    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "meh"]
    texts = [f"{words[i % 8]} thing number {i}" for i in range(48)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(48)]
    pd.DataFrame({"text": texts[:40], "label": labels[:40]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": texts[40:], "label": labels[40:]}).to_csv(tmp_path / "dev.csv", index=False)
    return tmp_path / "train.csv", tmp_path / "dev.csv"


def save_classifier(path, tokenizer_dir, id2label, *, seed=0, hidden=32, layers=2, tokenizer=None):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = tokenizer or AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        id2label=dict(enumerate(id2label)),
        label2id={n: i for i, n in enumerate(id2label)},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def word_tokenizer():
    """A word-level tokenizer with its own small vocabulary: a student that tokenizes unlike the teacher."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "good great fine bad awful poor nice meh thing number".split() + [str(i) for i in range(48)]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


def distill_argv(teacher, train, dev, out, cache_dir, *extra):
    return [
        "distill",
        "--teacher_model_name_or_path",
        str(teacher),
        "--train_file",
        str(train),
        "--validation_file",
        str(dev),
        "--output_dir",
        str(out),
        "--teacher_cache_dir",
        str(cache_dir),
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        *extra,
    ]


@pytest.mark.skipif(not memory.can_release_freed_memory(), reason="release_freed_memory needs glibc")
def test_distill_records_release_freed_memory(tmp_path, tiny_bert_dir, tiny_data):
    # In a child process: the allocator setting lasts for the whole process.
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"], layers=2)
    out = tmp_path / "student"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[0]")
    argv += ["--cache_teacher_logits", "true", "--release_freed_memory", "true"]
    proc = subprocess.run([sys.executable, "-m", "hf_transfer", *argv], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    memory = json.loads((out / "hf_transfer_run.json").read_text())["memory"]
    assert "(release_freed_memory)" in memory["allocator"]


def test_distill_builds_a_student_from_teacher_layers_with_the_cache(tmp_path, tiny_bert_dir, tiny_data):
    from transformers import AutoModelForSequenceClassification, pipeline

    # The teacher orders its labels unlike the data (which sees "pos" first): the student keeps the teacher's order.
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"], layers=3)
    out = tmp_path / "student"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[0,2]")
    assert main([*argv, "--cache_teacher_logits", "true"]) == 0
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 2 and student.config.hf_transfer_student_layers == [0, 2]
    assert student.config.id2label == {0: "neg", 1: "pos"}
    assert pipeline("text-classification", model=str(out))("great thing")[0]["label"] in {"neg", "pos"}
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert record["alpha"] == 0.5 and record["loss_terms"] == ["kd", "ce"]
    assert record["teacher_logit_cache"][0]["hit"] is False and record["speedup"] > 0
    assert 0 <= record["teacher_eval_accuracy"] <= 1 and record["retention_percent"] is not None
    assert record["speed_precision"] == record["accuracy_precision"] == "fp32"  # accelerate's "no" had been kept
    resolved = yaml.safe_load((out / "hf_transfer_config.yaml").read_text())
    assert resolved["distillation_results"]["teachers"] == [str(teacher)] and resolved["student_layers"] == [0, 2]
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("loss_kd" in e and "loss_ce" in e for e in log)
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert "distillation" in header["tags"] and "retention" in (out / "README.md").read_text()

    again = tmp_path / "again"  # the run's own config, fed back (its `distillation_results` are no settings)
    assert main(["distill", "--config", str(out / "hf_transfer_config.yaml"), "--output_dir", str(again)]) == 0
    assert json.loads((again / "hf_transfer_run.json").read_text())["distillation"]["teacher_logit_cache"][0]["hit"]
    changed = tmp_path / "changed"
    argv = distill_argv(teacher, *tiny_data, changed, tmp_path / "cache", "--student_layers", "[0,2]")
    assert main([*argv, "--cache_teacher_logits", "true", "--max_seq_length", "16"]) == 0
    assert not json.loads((changed / "hf_transfer_run.json").read_text())["distillation"]["teacher_logit_cache"][0][
        "hit"
    ]


def test_a_student_cut_from_a_true_false_teacher_keeps_its_labels(tmp_path, tiny_bert_dir):
    """A teacher named `true`/`false` in that order, data whose labels read as False/True: the names were compared as
    written, so the data kept its order while the student copied the teacher's head rows, and every label the
    student gave was the other one (same logits as the teacher, the opposite name)."""
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = [f"{'good' if i % 2 else 'bad'} thing number {i}" for i in range(24)]
    pd.DataFrame({"text": texts, "label": ["true" if i % 2 else "false" for i in range(24)]}).to_csv(
        tmp_path / "data.csv", index=False
    )
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["true", "false"], layers=2)
    out = tmp_path / "student"
    argv = distill_argv(teacher, tmp_path / "data.csv", tmp_path / "data.csv", out, tmp_path / "cache")
    assert main([*argv, "--student_layers", "[0, 1]", "--max_steps", "1", "--learning_rate", "1e-12"]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    named = []
    for folder in (teacher, out):  # the student is the teacher's two blocks, barely moved: the same decisions
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            ids = model(**batch).logits.argmax(-1).tolist()
        named.append([str(model.config.id2label[i]).lower() for i in ids])
    assert named[0] == named[1]


def test_a_max_seq_length_above_the_position_tables_is_lowered_to_them(tmp_path, tiny_bert_dir):
    """Teacher and student embed 128 positions: `max_seq_length 256` on long rows failed mid-run with a traceback."""
    import pandas as pd

    texts = [" ".join(["good" if i % 2 else "bad"] * 300) for i in range(16)]
    rows = pd.DataFrame({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(16)]})
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows[:4].to_csv(tmp_path / "dev.csv", index=False)
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"])
    out = tmp_path / "student"
    argv = distill_argv(teacher, tmp_path / "train.csv", tmp_path / "dev.csv", out, tmp_path / "cache")
    assert main([*argv, "--student_layers", "[0]", "--max_seq_length", "256", "--max_steps", "1"]) == 0
    assert yaml.safe_load((out / "hf_transfer_config.yaml").read_text())["max_seq_length"] == 128


def test_a_teacher_config_that_computes_otherwise_gets_a_new_logit_cache(tmp_path, tiny_bert_dir, tiny_data):
    """The cache was keyed by the teacher's weights, not its config: the same weights under another hidden_act reused
    logits that teacher no longer gives. A config change that computes the same (the path) still hits."""
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    hits = []
    for run in ("first", "edited", "again"):
        if run == "edited":
            config = json.loads((teacher / "config.json").read_text())
            (teacher / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
        out = tmp_path / run
        argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[0]")
        assert main([*argv, "--cache_teacher_logits", "true", "--max_steps", "1"]) == 0
        hits.append(json.loads((out / "hf_transfer_run.json").read_text())["distillation"]["teacher_logit_cache"][0])
    assert [info["hit"] for info in hits] == [False, False, True]
    assert hits[0]["key"] != hits[1]["key"] == hits[2]["key"]


def _online_and_cached(tmp_path, tiny_bert_dir, tiny_data, word_tokenizer, flags, read):
    """Distil a tiny teacher into a student with its own tokenizer, online and from the cache; `read(out)` of each."""
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    student = save_classifier(tmp_path / "student-init", None, ["pos", "neg"], seed=3, tokenizer=word_tokenizer)
    results = {}
    for mode in ("online", "cached"):
        out = tmp_path / mode
        argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--model_name_or_path", str(student))
        assert main([*argv, *flags, "--cache_teacher_logits", str(mode == "cached").lower()]) == 0
        results[mode] = read(out)
    return teacher, student, results


def test_student_with_its_own_tokenizer_online_equals_cached(tmp_path, tiny_bert_dir, tiny_data, word_tokenizer):
    def train_loss(out):
        return json.loads((out / "train_results.json").read_text())["train_loss"]

    flags = ["--alpha", "0.8"]
    *_, results = _online_and_cached(tmp_path, tiny_bert_dir, tiny_data, word_tokenizer, flags, train_loss)
    assert results["online"] == pytest.approx(results["cached"], rel=1e-4)


def test_pooled_hidden_loss_with_a_student_of_its_own_tokenizer_online_equals_cached(
    tmp_path, tiny_bert_dir, tiny_data, word_tokenizer, capsys
):
    """Pooled hidden states are one vector per row, whatever the tokens: a student with another tokenizer was refused
    ("compares token by token"). Online, the teacher's states are pooled over its own tokens, as the cache pools them,
    so both give the same losses; the token-level loss is still refused."""

    def hidden_losses(out):
        log = json.loads((out / "trainer_state.json").read_text())["log_history"]
        return [e["loss_hidden"] for e in log if "loss_hidden" in e]

    flags = ["--hidden_loss_weight", "1", "--hidden_loss_pooling", "mean", "--logging_steps", "1"]
    teacher, student, results = _online_and_cached(
        tmp_path, tiny_bert_dir, tiny_data, word_tokenizer, flags, hidden_losses
    )
    assert results["online"] and all(h > 0 for h in results["online"])
    assert results["online"] == pytest.approx(results["cached"], rel=1e-3, abs=1e-4)
    argv = distill_argv(teacher, *tiny_data, tmp_path / "tokens", tmp_path / "cache", "--model_name_or_path",
                        str(student), "--hidden_loss_weight", "1")  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    assert "hidden_loss_pooling tokens compares token by token" in capsys.readouterr().err


def test_hidden_state_distillation_with_a_projection_that_is_not_saved(tmp_path, tiny_bert_dir, tiny_data):
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"], layers=4)
    student = save_classifier(tmp_path / "student-init", tiny_bert_dir, ["pos", "neg"], hidden=16, seed=5)
    out = tmp_path / "out"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--model_name_or_path", str(student))
    assert main([*argv, "--hidden_loss_weight", "1.0", "--hidden_loss_type", "cosine"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert record["loss_terms"] == ["kd", "ce", "hidden"] and record["layer_map"] == {"0": 1, "1": 3}
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "projection" in k]
        assert f.get_tensor("bert.embeddings.word_embeddings.weight").shape[1] == 16
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(e["loss_hidden"] > 0 for e in log if "loss_hidden" in e) and any("loss_hidden" in e for e in log)


def test_ensemble_of_teachers_with_permuted_labels(tmp_path, tiny_bert_dir, tiny_data):
    first = save_classifier(tmp_path / "t1", tiny_bert_dir, ["pos", "neg"], seed=1)
    second = save_classifier(tmp_path / "t2", tiny_bert_dir, ["neg", "pos"], seed=2)
    out = tmp_path / "out"
    argv = distill_argv(f"[{first}, {second}]", *tiny_data, out, tmp_path / "cache", "--student_layers", "[1]")
    assert main([*argv, "--teacher_weights", "[2, 1]", "--cache_teacher_logits", "true"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert record["teachers"] == [str(first), str(second)] and record["teacher_weights"] == [2.0, 1.0]
    assert len(record["teacher_logit_cache"]) == 2


def test_multi_label_distillation_with_a_bf16_teacher(tmp_path, tiny_bert_dir):
    rows = [
        {"text": f"item {i} is {'red' if i % 2 else 'blue'}", "labels": [["a"], ["b"], ["a", "b"], []][i % 4]}
        for i in range(40)
    ]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["b", "a"])
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    out = tmp_path / "out"
    argv = distill_argv(teacher, train, train, out, tmp_path / "cache", "--student_layers", "[1]")
    assert main([*argv, "--teacher_bf16", "true", "--cache_teacher_logits", "true"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["problem_type"] == "multi_label_classification" and record["label_names"] == ["b", "a"]
    assert record["distillation"]["teacher_dtype"] == "bf16"
    assert record["distillation"]["teacher_eval_metric"] == "subset_accuracy"


def test_speed_ratio_times_teacher_and_student_at_the_same_precision(tmp_path, tiny_bert_dir, tiny_data, monkeypatch):
    import torch

    import hf_transfer.distill.command as command

    seen = []
    real = command.measure_speed

    def spying(models, texts, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        assert len(texts) == 5  # SPEED_ROWS: every validation row, timed twice or more per model, was most of a run
        return real(models, texts, *args, **kwargs)

    monkeypatch.setattr(command, "measure_speed", spying)
    monkeypatch.setattr(command, "SPEED_ROWS", 5)
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    out = tmp_path / "out"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[1]")
    assert main([*argv, "--bf16", "true", "--use_cpu", "true"]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert seen == [True] and record["speed_precision"] == "bf16" and record["speed_rows"] == 5


def test_distil_into_a_lora_student_that_reloads_with_its_head(tmp_path, tiny_bert_dir, tiny_data):
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"], layers=3)
    student = save_classifier(tmp_path / "student-init", tiny_bert_dir, ["pos", "neg"], seed=4)
    out = tmp_path / "out"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--model_name_or_path", str(student))
    assert main([*argv, "--peft_method", "lora", "--lora_r", "4", "--cache_teacher_logits", "true"]) == 0
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["adapter"]["method"] == "lora" and record["adapter"]["reload_max_abs_logit_diff"] == 0.0
    assert record["distillation"]["loss_terms"] == ["kd", "ce"]
    header = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert {"distillation", "peft", "lora"} <= set(header["tags"])


def test_bad_distill_inputs_are_one_line_exit_2_and_write_nothing(tmp_path, tiny_bert_dir, tiny_data, capsys):
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    three = save_classifier(tmp_path / "three", tiny_bert_dir, ["a", "b", "c"])
    adapter = tmp_path / "adapter"  # what a LoRA run writes: no config.json, an adapter config
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    capsys.readouterr()
    cases = [
        (teacher, ["--student_layers", "[0]", "--alpha", "1.5"], "alpha must be in [0, 1]"),
        (teacher, ["--student_layers", "[0]", "--temperature", "0"], "temperature must be > 0"),
        (teacher, ["--student_layers", "[0, 5]"], "student_layers"),
        (teacher, ["--student_layers", "[1, 0]"], "ascending"),
        (three, ["--student_layers", "[0]"], "['a', 'b', 'c']"),
        (tiny_bert_dir, ["--student_layers", "[0]"], "not a sequence classifier"),
        (teacher, [], "no student"),
        (teacher, ["--student_layers", "[0]", "--model_name_or_path", str(teacher)], "not both"),
        (tmp_path / "missing", ["--student_layers", "[0]"], "does not exist"),
        (teacher, ["--student_layers", "[0]", "--hidden_loss_weight", "1", "--layer_map", "[0, 1]"], "layer_map"),
        (teacher, ["--student_layers", "[0]", "--teacher_top_k", "2"], "cache_teacher_logits"),
        # k = 1 left one-hot targets: the temperature did nothing and the soft loss was T² times a hard one.
        (
            teacher,
            ["--student_layers", "[0]", "--cache_teacher_logits", "true", "--teacher_top_k", "1"],
            "teacher_top_k must be at least 2",
        ),
        (teacher, ["--student_layers", "[0]", "--peft_method", "lora"], "adapter on a student built"),
        (teacher, ["--student_layers", "[0, 0]"], "for example [0, 1] keeps"),  # its example is a valid list too
        (adapter, ["--student_layers", "[0]"], "holds a PEFT adapter"),
        (teacher, ["--model_name_or_path", str(adapter)], "holds a PEFT adapter"),
    ]
    for model, extra, needle in cases:
        out = tmp_path / "out"
        code = main([*distill_argv(model, *tiny_data, out, tmp_path / "cache"), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2, (extra, err)
        assert len(err.splitlines()) == 1 and needle.lower() in err.lower(), (extra, err)
        assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        # A string YAML reads as text made parse_index_list recurse until a RecursionError traceback.
        ({"student_layers": "abc"}, r"student_layers must be an int or a list of ints .*'abc'"),
        ({"layer_map": "first"}, r"layer_map must be an int or a list of ints .*'first'"),
        # inf made every loss NaN, and the run saved a NaN model with exit status 0.
        ({"hidden_loss_weight": float("inf")}, "hidden_loss_weight must be finite and >= 0"),
    ],
)
def test_distillation_arguments_refuse_text_for_a_list_and_an_infinite_weight(fields, match):
    with pytest.raises(ConfigError, match=match):
        DistillationArguments(teacher_model_name_or_path="t", **fields)


def test_one_teacher_listed_twice_is_refused(tmp_path, monkeypatch):
    """It was averaged with itself at twice the compute, and the card counted its parameters twice and its speed as
    that of two teachers."""
    (tmp_path / "run1").mkdir()
    monkeypatch.chdir(tmp_path)
    for teachers in (["org/t", "org/t"], ["run1", "./run1"], [str(tmp_path / "run1"), "run1/"]):
        with pytest.raises(ConfigError, match=r"names the same teacher twice .*teacher_weights"):
            DistillationArguments(teacher_model_name_or_path=teachers)
    assert DistillationArguments(teacher_model_name_or_path=["org/t", "run1"]).teacher_model_name_or_path == [
        "org/t",
        "run1",
    ]


@pytest.mark.parametrize(
    ("teacher", "extra", "needle"),
    [
        ("teacher", ["--student_layers", "[0, 5]"], "each in [0, 2) for this 2-block teacher"),
        ("base model", ["--student_layers", "[0]"], "not a sequence classifier"),
        # k above the label count kept every logit, and the run recorded top_k 5 as if it had applied.
        ("teacher", ["--student_layers", "[0]", "--cache_teacher_logits", "true", "--teacher_top_k", "5"],
         "every logit anyway; drop it (2 labels leave nothing to cut)."),  # "set it below 2" could not be done
    ],
)  # fmt: skip
def test_what_the_teacher_config_decides_is_refused_before_the_data_is_read(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch, teacher, extra, needle
):
    """Whether the teacher is a classifier, which blocks a student can keep and how many labels there are is in the
    teacher's config.json: it was checked only after the training data had been read and its labels mapped."""

    def never(*args, **kwargs):
        raise AssertionError("the data was read before the teacher's config was checked")

    monkeypatch.setattr("hf_transfer.distill.plan.load_checked_data", never)
    path = (
        save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"]) if teacher == "teacher" else tiny_bert_dir
    )
    out = tmp_path / "out"
    capsys.readouterr()
    assert main([*distill_argv(path, *tiny_data, out, tmp_path / "cache"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        # distill never takes the few-shot route: these ran the ordinary distillation, silently.
        (["--few_shot", "true"], "few_shot is true, but the few-shot route is hf-transfer train's"),
        (["--few_shot_body_epochs", "4"], "few_shot_body_epochs is set, but the few-shot route"),
        # alpha 1 leaves no CE term for the weights to weigh; the record and card still listed them.
        (["--alpha", "1", "--class_weights", "balanced"], "class_weights weigh the hard-label (CE) term, but alpha"),
        (["--alpha", "1", "--label_smoothing_factor", "0.1"], "label_smoothing_factor smooths the hard-label (CE)"),
    ],
)  # fmt: skip
def test_options_distill_would_ignore_are_refused_before_the_data_is_read(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch, extra, needle
):
    def never(*args, **kwargs):
        raise AssertionError("the data was read before the options were checked")

    monkeypatch.setattr("hf_transfer.distill.plan.load_checked_data", never)
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    out = tmp_path / "out"
    capsys.readouterr()
    argv = [*distill_argv(teacher, *tiny_data, out, tmp_path / "cache"), "--student_layers", "[0]", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("role", ["teacher", "student"])
def test_an_onnx_export_is_refused_as_teacher_or_student_before_the_data_is_read(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch, role
):
    """An `export` folder has a config and a tokenizer but no PyTorch weights: it was refused only when the weights
    loaded, after the data was tokenized, by transformers' "no file named model.safetensors"."""
    import shutil

    def never(*args, **kwargs):
        raise AssertionError("the data was read or weights were loaded before the ONNX folder was refused")

    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    onnx = tmp_path / "exported"  # what `hf-transfer export` writes, as far as the pre-flight looks (no real graph)
    shutil.copytree(teacher, onnx, ignore=shutil.ignore_patterns("*.safetensors"))
    (onnx / "model.onnx").write_bytes(b"not a graph")
    (onnx / "hf_transfer_run.json").write_text(json.dumps({"task": "export", "export": {"source": str(teacher)}}))
    monkeypatch.setattr("hf_transfer.distill.plan.load_checked_data", never)
    monkeypatch.setattr("hf_transfer.distill.plan.load_classifier", never)
    models = (onnx, ["--student_layers", "[0]"]) if role == "teacher" else (teacher, ["--model_name_or_path", onnx])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main([*distill_argv(models[0], *tiny_data, out, tmp_path / "cache"), *map(str, models[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{str(onnx)!r} is an ONNX export" in err and f"it was exported from ({str(teacher)!r})" in err, err
    assert not out.exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("case", ["missing folder", "adapter folder"])
@pytest.mark.parametrize("command", ["train", "distill"])
def test_a_model_path_that_is_no_model_is_refused_before_the_data_is_read(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch, command, case
):
    """A missing model folder (or a PEFT adapter's) was reported only after the training data had been read and its
    labels mapped: seconds on a large file, for a check of milliseconds."""

    def never(*args, **kwargs):
        raise AssertionError("the data was read before the model path was refused")

    bad = tmp_path / "no-model"
    if case == "adapter folder":
        bad.mkdir()
        (bad / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(
        f"hf_transfer.{'distill.plan' if command == 'distill' else 'train.preflight'}.load_checked_data", never
    )
    out = tmp_path / "out"
    if command == "distill":
        teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
        argv = [*distill_argv(teacher, *tiny_data, out, tmp_path / "cache"), "--model_name_or_path", str(bad)]
    else:
        argv = ["train", "--model_name_or_path", str(bad), "--train_file", str(tiny_data[0]), "--output_dir", str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert ("does not exist" if case == "missing folder" else "holds a PEFT adapter") in err, err
    assert not out.exists()


# --- end to end on the real model ------------------------------------------------------------------------------------


def test_distill_real_minilm_into_three_layers(tmp_path, minilm_path):
    """A real 6-layer MiniLM classifier distilled into the 3-layer student DistilBERT-style, with the cache."""
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    repo = Path(__file__).resolve().parent.parent
    teacher_dir = tmp_path / "teacher"
    teacher = AutoModelForSequenceClassification.from_pretrained(
        minilm_path, num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"}
    )
    teacher.save_pretrained(teacher_dir)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(teacher_dir)
    out = tmp_path / "student"
    quick = repo / "scripts" / "quickstart"
    argv = distill_argv(teacher_dir, quick / "train.csv", quick / "validation.csv", out, tmp_path / "cache")
    assert (
        main([*argv, "--student_layers", "[0,2,4]", "--cache_teacher_logits", "true", "--max_train_samples", "96"])
        == 0
    )
    record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]
    assert record["student_parameters"] < record["teacher_parameters"]
    # The speed ratio is a wall-clock measurement on a shared machine: what is guaranteed is that it is the ratio of
    # the two throughputs recorded beside it, both measured on the same rows.
    speed = record["student_samples_per_second"] / record["teacher_samples_per_second"]
    assert record["speedup"] == pytest.approx(speed, rel=0.01) and record["speed_rows"] > 0
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 3


def test_cli_reads_teacher_lists(tmp_path):
    from hf_transfer.cli import parse_command_args

    _, _, distill, _, _ = parse_command_args(
        "distill",
        ["--teacher_model_name_or_path", "[a, b]", "--student_layers", "[0,2,4]", "--output_dir", str(tmp_path)],
    )
    assert distill.teacher_model_name_or_path == ["a", "b"] and distill.student_layers == [0, 2, 4]


def test_a_trainer_built_directly_says_to_keep_the_teacher_columns(tmp_path):
    with pytest.raises(ConfigError, match="remove_unused_columns=False"):
        distill_run(tmp_path, cached=True, remove_unused_columns=True)


# --- distillation across architectures, tokenizers and label sets (ninth audit) --------------------------------------


def multi_label_rows(path, labels=("a", "b", "c")):
    rows = [{"text": f"item {i} is {'red' if i % 2 else 'blue'}", "labels": [labels[i % 3]]} for i in range(24)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def save_tiny_llama(path, tokenizer_dir, layers: int):
    """A tiny Llama classifier (pos/neg) with the tiny BERT's tokenizer, saved to `path`; returns its config."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    sizes = {"hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 37}
    config = LlamaConfig(vocab_size=len(tok), num_hidden_layers=layers, pad_token_id=tok.pad_token_id, **sizes,
                         id2label={0: "pos", 1: "neg"}, label2id={"pos": 0, "neg": 1})  # fmt: skip
    LlamaForSequenceClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return config


def refused_before_any_weight_loads(monkeypatch, capsys, argv, needle):
    def never(*args, **kwargs):
        raise AssertionError("a model's weights loaded before the run was refused")

    monkeypatch.setattr("hf_transfer.distill.plan.load_classifier", never)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


def test_a_teacher_reads_pairs_or_single_texts_as_it_was_trained(tmp_path, tiny_bert_dir, capsys, monkeypatch, caplog):
    """A teacher trained on text pairs was fed the first texts alone when the distillation data named no second
    column (its soft labels, and its recorded validation accuracy, came from half its input), and a single-text
    teacher was fed pairs, silently. Where the data names no columns the teacher's are read (said in one line), as
    `predict` and `evaluate` read a model's; a file without them, or a pair column a single-text teacher never read,
    is refused before any weight loads. GLUE column names (`sentence1`, `sentence2`) were read as a pair even for a
    teacher trained on `sentence1` alone: the check ran before that detection."""
    import pandas as pd

    words = ["good", "great", "fine", "bad", "awful", "poor"]
    rows = pd.DataFrame({"text": [f"{words[i % 6]} thing {i}" for i in range(24)],
                         "second": [f"number {i}" for i in range(24)],
                         "label": ["pos" if i % 6 < 3 else "neg" for i in range(24)]})  # fmt: skip
    rows.to_csv(tmp_path / "train.csv", index=False)
    rows.drop(columns="second").to_csv(tmp_path / "single.csv", index=False)
    rows.rename(columns={"text": "sentence1", "second": "sentence2"}).to_csv(tmp_path / "glue.csv", index=False)
    train, single, glue = tmp_path / "train.csv", tmp_path / "single.csv", tmp_path / "glue.csv"
    teachers = {}
    for kind, data, extra in (("pairs", train, ["--text_pair_column_name", "second"]), ("single", train, []),
                              ("glue1", glue, ["--text_column_name", "sentence1"])):  # fmt: skip
        teachers[kind] = tmp_path / f"teacher-{kind}"
        assert main(["train", "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(data),
                     "--validation_file", str(data), "--output_dir", str(teachers[kind]), "--max_steps", "1",
                     "--use_cpu", "true", "--disable_tqdm", "true", "--report_to", "none", *extra]) == 0  # fmt: skip
    out = tmp_path / "out"
    argv = distill_argv(teachers["pairs"], single, single, out, tmp_path / "cache", "--student_layers", "[0]")
    with monkeypatch.context() as m:
        refused_before_any_weight_loads(m, capsys, argv, f"teacher {str(teachers['pairs'])!r} was trained on text "
                                        "pairs (second text column 'second'); give")  # fmt: skip
        argv = distill_argv(teachers["single"], train, train, out, tmp_path / "cache", "--student_layers", "[0]")
        argv += ["--text_pair_column_name", "second"]
        refused_before_any_weight_loads(m, capsys, argv, f"teacher {str(teachers['single'])!r} was trained on "
                                        "single texts, but text_pair_column_name is 'second'")  # fmt: skip
    assert not out.exists()
    argv = distill_argv(teachers["pairs"], train, train, out, tmp_path / "cache", "--student_layers", "[0]")
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    assert "trained on text pairs: reading column 'second' as the second text of" in caplog.text
    assert json.loads((out / "hf_transfer_run.json").read_text())["data"]["columns"]["text_pair"] == "second"
    glue_out = tmp_path / "glue-out"
    argv = distill_argv(teachers["glue1"], glue, glue, glue_out, tmp_path / "cache", "--student_layers", "[0]")
    assert main(argv) == 0
    columns = json.loads((glue_out / "hf_transfer_run.json").read_text())["data"]["columns"]
    assert columns["text"] == "sentence1" and columns.get("text_pair") is None


def test_teacher_top_k_on_multi_label_data_is_refused(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    """The top-k cache rebuilt the teacher's targets as a softmax over its k largest logits: for multi-label data,
    whose KD targets are each label's sigmoid, logits [3, 2, -5] at k = 2 became targets [0.73, 0.27, 0] where the
    teacher says [0.95, 0.88, 0.01], and the run trained on them, silently."""
    train = multi_label_rows(tmp_path / "train.jsonl")
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["a", "b", "c"])
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    argv = distill_argv(teacher, train, train, tmp_path / "out", tmp_path / "cache", "--student_layers", "[1]")
    argv += ["--cache_teacher_logits", "true", "--teacher_top_k", "2"]
    refused_before_any_weight_loads(monkeypatch, capsys, argv, "teacher_top_k 2 keeps a softmax")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("config_pad", [None, 100])
@pytest.mark.parametrize("cached", [True, False])
def test_a_decoder_teacher_without_a_pad_id_gets_its_tokenizers(tmp_path, tiny_bert_dir, tiny_data, cached,
                                                                 config_pad):  # fmt: skip
    """A GPT-2 classifier whose config.json names no pad_token_id (as many on the Hub) stopped the run with "Cannot
    handle batch sizes > 1 if no padding token is defined" after the weights had loaded. It takes its tokenizer's pad
    id, as a student does, and its cached logits are each row's own, unpadded ones. One whose config names another
    id than its tokenizer pads with (100, [UNK]) read a padded row's padding as its last token: its cached logits
    were not each row's own."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    config = GPT2Config(n_embd=32, n_head=2, n_layer=2, vocab_size=len(tok), n_positions=128, num_labels=2,
                        id2label={0: "pos", 1: "neg"}, label2id={"pos": 0, "neg": 1},
                        pad_token_id=config_pad)  # fmt: skip
    torch.manual_seed(0)
    teacher = GPT2ForSequenceClassification(config).eval()
    teacher.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    assert json.loads((tmp_path / "teacher" / "config.json").read_text()).get("pad_token_id") == config_pad
    out = tmp_path / "out"
    argv = distill_argv(tmp_path / "teacher", *tiny_data, out, tmp_path / "cache", "--student_layers", "[1]")
    assert main([*argv, "--cache_teacher_logits", str(cached).lower(), "--max_steps", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == tok.pad_token_id
    if cached:
        import datasets
        import pandas as pd

        (folder,) = (tmp_path / "cache").iterdir()
        cache = datasets.Dataset.from_file(str(folder / "data.arrow"))
        texts = pd.read_csv(tiny_data[0])["text"].tolist()
        with torch.no_grad():
            alone = [teacher(**tok(text, return_tensors="pt")).logits[0] for text in texts]
        torch.testing.assert_close(torch.tensor(cache["teacher_logits"]), torch.stack(alone), rtol=1e-4, atol=1e-5)


def test_hidden_loss_maps_an_albert_teachers_every_layer_run(tmp_path, tiny_bert_dir, tiny_data):
    """ALBERT runs one shared block num_hidden_layers times, one hidden state each; the layer map counted distinct
    blocks (1), so a 2-block student had block 0 matched to the teacher's embeddings (block -1) and block 1 to its
    first of 4 layers, and `layer_map [1, 3]` was refused as out of range."""
    from transformers import AlbertConfig, AlbertForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    labels = {"id2label": {0: "pos", 1: "neg"}, "label2id": {"pos": 0, "neg": 1}}
    sizes = {"embedding_size": 16, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37}
    config = AlbertConfig(vocab_size=len(tok), num_hidden_layers=4, max_position_embeddings=128, **sizes, **labels)
    torch.manual_seed(0)
    AlbertForSequenceClassification(config).save_pretrained(tmp_path / "albert")
    tok.save_pretrained(tmp_path / "albert")
    student = save_classifier(tmp_path / "student-init", tiny_bert_dir, ["pos", "neg"], seed=3)
    for run, extra in (("default", []), ("given", ["--layer_map", "[1, 3]"])):
        out = tmp_path / run
        argv = distill_argv(
            tmp_path / "albert", *tiny_data, out, tmp_path / "cache", "--model_name_or_path", str(student)
        )
        assert main([*argv, "--hidden_loss_weight", "1", "--max_steps", "1", *extra]) == 0
        assert json.loads((out / "hf_transfer_run.json").read_text())["distillation"]["layer_map"] == {"0": 1, "1": 3}


def test_a_student_cut_from_the_teacher_refuses_another_tokenizer(
    tmp_path, tiny_bert_dir, tiny_data, word_tokenizer, capsys, monkeypatch
):
    """`student_layers` with `tokenizer_name` trained the teacher's embedding rows on another tokenizer's ids ("good
    thing" read as rows [2, 10] of a matrix whose "good" is row 2204) and saved that tokenizer beside them."""
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    word_tokenizer.save_pretrained(tmp_path / "words")
    argv = distill_argv(teacher, *tiny_data, tmp_path / "out", tmp_path / "cache", "--student_layers", "[1]")
    argv += ["--tokenizer_name", str(tmp_path / "words")]
    refused_before_any_weight_loads(monkeypatch, capsys, argv, "so it reads that teacher's tokenizer")
    assert not (tmp_path / "out").exists()
    # The teacher's own tokenizer named again is no other tokenizer.
    out = tmp_path / "same"
    argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[1]", "--max_steps", "1")
    monkeypatch.undo()
    assert main([*argv, "--tokenizer_name", str(teacher)]) == 0


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        # An AttributeError traceback ('Seq2SeqSequenceClassifierOutput' has no 'hidden_states') at the first step.
        (["--hidden_loss_weight", "1"], "is an encoder-decoder (bart), whose classifier returns none"),
        # Refused only once the teacher's weights had loaded and the student was built.
        (["--student_layers", "[1, 3]"], "is an encoder-decoder (bart): the cut takes encoder blocks"),
    ],
)
def test_an_encoder_decoder_teacher_is_refused_where_it_cannot_work(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch, extra, needle
):
    from transformers import AutoTokenizer, BartConfig, BartForSequenceClassification

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    sizes = {"encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 37, "decoder_ffn_dim": 37}
    labels = {"id2label": {0: "pos", 1: "neg"}, "label2id": {"pos": 0, "neg": 1}}
    config = BartConfig(d_model=32, encoder_layers=4, decoder_layers=4, vocab_size=len(tok), **sizes, **labels)
    BartForSequenceClassification(config).save_pretrained(tmp_path / "bart")
    tok.save_pretrained(tmp_path / "bart")
    argv = distill_argv(tmp_path / "bart", *tiny_data, tmp_path / "out", tmp_path / "cache", *extra)
    if "--student_layers" not in extra:
        student = save_classifier(tmp_path / "student-init", tiny_bert_dir, ["pos", "neg"])
        argv += ["--model_name_or_path", str(student)]
    refused_before_any_weight_loads(monkeypatch, capsys, argv, needle)
    assert not (tmp_path / "out").exists()


def test_hidden_loss_from_a_bert_teacher_into_a_distilbert_student(tmp_path, tiny_bert_dir, tiny_data):
    """DistilBERT's recipe: its tokenizer gives BERT's ids at BERT's positions but names no token_type_ids, so the
    two fingerprints differ, and the hidden-state loss was refused ("theirs differ"). The teacher reads its own
    tokenization, aligned token by token with the student's."""
    from transformers import (
        AutoTokenizer,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        DistilBertTokenizerFast,
    )

    bert = AutoTokenizer.from_pretrained(tiny_bert_dir)
    distil = DistilBertTokenizerFast.from_pretrained(tiny_bert_dir)
    assert bert("good", "thing")["input_ids"] == distil("good", "thing")["input_ids"]
    assert "token_type_ids" not in distil("good")
    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"], layers=4)
    labels = {"id2label": {0: "pos", 1: "neg"}, "label2id": {"pos": 0, "neg": 1}}
    config = DistilBertConfig(vocab_size=len(bert), dim=32, n_layers=2, n_heads=2, hidden_dim=37, **labels)
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path / "student-init")
    distil.save_pretrained(tmp_path / "student-init")
    out = tmp_path / "out"
    argv = distill_argv(
        teacher, *tiny_data, out, tmp_path / "cache", "--model_name_or_path", str(tmp_path / "student-init")
    )
    assert main([*argv, "--hidden_loss_weight", "1", "--hidden_loss_type", "cosine", "--max_steps", "2"]) == 0
    assert json.loads((out / "hf_transfer_run.json").read_text())["distillation"]["layer_map"] == {"0": 1, "1": 3}
    log = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["loss_hidden"] > 0 for e in log if "loss_hidden" in e] == [True, True]


def test_the_hidden_projection_gets_each_steps_gradient_alone(tmp_path):
    """Trainer clears the model's gradients after each optimizer step, and the projections are no part of the model:
    their gradient was the sum over every step so far. At learning rate 0, on one batch repeated, every step's
    gradient must be the same, not 1, 2, 3... times the first."""
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

    from hf_transfer.distill.trainer import hidden_state_projections

    torch.manual_seed(2)
    sizes = {"num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64, "num_labels": 3}
    sizes.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, intermediate_size=32, **sizes))
    teacher = tiny_model(seed=1)
    projections = hidden_state_projections(student.config, teacher.config, {0: 0, 1: 1})
    norms = []

    class Record(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            norms.append(float(projections["1"].weight.grad.norm()))

    distill = DistillationArguments(teacher_model_name_or_path="t", alpha=0.5, hidden_loss_weight=1.0)
    args = make_args(tmp_path, max_steps=3, per_device_train_batch_size=4, remove_unused_columns=False)
    args.learning_rate = 0.0  # weights that never move give every step the same gradient (a config may not say 0)
    trainer = DistillationTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list([{"input_ids": [1, 7, 9, 11], "labels": 1}] * 12),
        data_collator=DistillationCollator(_PadTokenizer()),
        distill_args=distill,
        teachers=[teacher],
        layer_map={0: 0, 1: 1},
        projections=projections,
        callbacks=[Record()],
    )
    trainer.train()
    assert norms[0] > 0 and norms == pytest.approx([norms[0]] * 3, rel=1e-5)
    assert projections["1"].weight.grad is None  # cleared after the last step, as the model's are


def test_max_grad_norm_clips_the_projection_as_the_student(tmp_path):
    """Trainer clips the model's parameters alone, and the projections are no part of the model: their gradient went
    unclipped. Now each is clipped to max_grad_norm on its own norm before the optimizer steps (read after the step,
    once every callback has run; the gradients are cleared at the step's end)."""
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, TrainerCallback

    from hf_transfer.distill.trainer import hidden_state_projections

    torch.manual_seed(2)
    sizes = {"num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64, "num_labels": 3}
    student = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=16, intermediate_size=32, **sizes))
    projections = hidden_state_projections(student.config, tiny_model(seed=1).config, {0: 0, 1: 1})
    norms = []

    class Record(TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kwargs):
            def norm(parameters):
                return float(
                    torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
                )

            norms.append((norm(student.parameters()), norm(projections.parameters())))

    trainer = DistillationTrainer(
        model=student,
        args=make_args(
            tmp_path, max_steps=2, per_device_train_batch_size=4, remove_unused_columns=False, max_grad_norm=1e-3
        ),  # fmt: skip
        train_dataset=Dataset.from_list([{"input_ids": [1, 7, 9, 11], "labels": 1}] * 8),
        data_collator=DistillationCollator(_PadTokenizer()),
        distill_args=DistillationArguments(teacher_model_name_or_path="t", alpha=0.5, hidden_loss_weight=1.0),
        teachers=[tiny_model(seed=1)],
        layer_map={0: 0, 1: 1},
        projections=projections,
        callbacks=[Record()],
    )
    trainer.train()
    assert len(norms) == 2
    for model_norm, projection_norm in norms:
        assert model_norm == pytest.approx(1e-3, rel=1e-4) and projection_norm == pytest.approx(1e-3, rel=1e-4)


def test_a_resumed_run_goes_on_with_the_trained_hidden_projection(tmp_path, tiny_bert_dir, tiny_data):
    """The projection between hidden sizes trains with the student but is no part of the saved model, and no
    checkpoint held it: a resumed run restarted it from its initial weights (the student and the optimizer state
    resumed), so it ended elsewhere than the run that was never stopped. It (and the resume-order facts) is written
    after `trainer_state.json`, which names it: a checkpoint without it was cut off between the two, and is not
    complete (a kill there had left a complete checkpoint whose resume restarted the projection untrained)."""
    import shutil

    from safetensors.torch import load_file

    from hf_transfer.outputs.checkpoints import complete_checkpoints
    from hf_transfer.train.resume_order import ORDER_FILE

    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"], layers=4)
    student = save_classifier(tmp_path / "student-init", tiny_bert_dir, ["pos", "neg"], hidden=16, seed=5)
    extra = [
        "--model_name_or_path",
        str(student),
        "--hidden_loss_weight",
        "1",
        "--max_steps",
        "4",
        "--save_steps",
        "2",
    ]
    extra += ["--per_device_train_batch_size", "4", "--save_strategy", "steps"]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert main([*distill_argv(teacher, *tiny_data, whole, tmp_path / "cache"), *extra]) == 0
    assert (whole / "checkpoint-2" / "hidden_projections.safetensors").is_file()
    state = json.loads((whole / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["CheckpointFiles"]["args"]["files"] == [ORDER_FILE, PROJECTIONS_FILE]
    for name in (PROJECTIONS_FILE, ORDER_FILE):  # as a kill after trainer_state.json leaves it
        cut = tmp_path / f"cut-{name}"
        shutil.copytree(whole, cut)
        (cut / "checkpoint-4" / name).unlink()
        assert [p.name for p in complete_checkpoints(cut)] == ["checkpoint-2"]
    argv = distill_argv(teacher, *tiny_data, resumed, tmp_path / "cache")
    assert main([*argv, *extra, "--resume_from_checkpoint", str(whole / "checkpoint-2")]) == 0
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert not [name for name in a if not torch.equal(a[name], b[name])]


def test_hidden_loss_never_pairs_a_final_normed_state_with_an_unnormed_one(
    tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch
):
    """A pre-norm decoder's last entry of hidden_states comes after its final norm (Llama's RMS about 1, its other
    layers' about 0.02): a Llama student cut from blocks [0, 2] of 4 had its last state matched to the teacher's
    unnormalised block 2, and the loss pulled it towards that scale."""
    from transformers import BertConfig

    config = save_tiny_llama(tmp_path / "llama", tiny_bert_dir, layers=4)
    argv = distill_argv(tmp_path / "llama", *tiny_data, tmp_path / "out", tmp_path / "cache")
    argv += ["--student_layers", "[0, 2]", "--hidden_loss_weight", "1"]
    refused_before_any_weight_loads(monkeypatch, capsys, argv, "pairs student block 1 with teacher block 2")
    assert not (tmp_path / "out").exists()

    from hf_transfer.core.models import meta_layout
    from hf_transfer.distill.students import check_final_norm_pairs, has_final_norm

    assert has_final_norm(meta_layout(config)) and not has_final_norm(meta_layout(BertConfig(num_hidden_layers=2)))
    bert, llama = (meta_layout(BertConfig(num_hidden_layers=4)), 4), (meta_layout(config), 4)
    check_final_norm_pairs({0: 0, 1: 3}, (meta_layout(config), 2), llama)  # last to last, middle to middle
    check_final_norm_pairs({0: 1, 1: 3}, (meta_layout(BertConfig(num_hidden_layers=2)), 2), bert)
    with pytest.raises(
        ConfigError, match="pairs student block 0 with teacher block 1"
    ):  # a GPT-2-like student's middle
        check_final_norm_pairs({0: 1, 1: 3}, (meta_layout(config), 2), bert)


def test_cls_pooling_is_refused_for_a_decoder_only_model(tmp_path, tiny_bert_dir, tiny_data, capsys, monkeypatch):
    """Patient KD's `cls` targets are the first token's state: in a decoder-only model that token sees only itself,
    so every row that starts alike gave the same target, and the hidden-state loss taught nothing."""
    save_tiny_llama(tmp_path / "llama", tiny_bert_dir, layers=2)
    argv = distill_argv(tmp_path / "llama", *tiny_data, tmp_path / "out", tmp_path / "cache")
    argv += ["--student_layers", "[0, 1]", "--hidden_loss_weight", "1", "--hidden_loss_pooling", "cls"]
    refused_before_any_weight_loads(
        monkeypatch, capsys, [*argv, "--cache_teacher_logits", "true"], "is a decoder-only"
    )
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_a_bf16_run_distils_from_the_same_teacher_logits_cached_or_online(
    tmp_path, tiny_bert_dir, tiny_data, monkeypatch
):
    """In a bf16 (or fp16) run the online teacher runs under the run's autocast (accelerate wraps its forward), but the
    cache was built in fp32 and keyed without the precision: cached and online runs distilled from other targets, and
    a bf16 run reused an fp32 run's logits. The cache is now built under the run's autocast and keyed by it."""
    import hf_transfer.distill.trainer as trainer_module

    teacher = save_classifier(tmp_path / "teacher", tiny_bert_dir, ["pos", "neg"])
    real, seen = trainer_module.distillation_loss, {}

    def spying(student_logits, teacher_logits, *args, **kwargs):
        seen[mode].append(teacher_logits.detach().clone())
        return real(student_logits, teacher_logits, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "distillation_loss", spying)
    caches = {}
    for mode, flags in [("fp32", []), ("online", ["--bf16", "true"]), ("cached", ["--bf16", "true"])]:
        seen[mode] = []
        out = tmp_path / mode
        argv = distill_argv(teacher, *tiny_data, out, tmp_path / "cache", "--student_layers", "[0]", *flags)
        assert main([*argv, "--max_steps", "2", "--cache_teacher_logits", str(mode != "online").lower()]) == 0
        if mode != "online":
            record = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]["teacher_logit_cache"][0]
            caches[mode] = record
    assert caches["cached"]["hit"] is False and caches["cached"]["key"] != caches["fp32"]["key"]
    assert caches["cached"]["precision"] == "bf16" and caches["fp32"]["precision"] == "fp32"
    assert len(seen["online"]) == len(seen["cached"]) == 2
    for online, cached, fp32 in zip(seen["online"], seen["cached"], seen["fp32"], strict=True):
        torch.testing.assert_close(cached, online, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(fp32, online, rtol=1e-6, atol=1e-7)  # the bf16 targets are not the fp32 ones
