"""The distillation transfer set beyond the labelled rows: unlabelled files, augmentation, pooled hidden-state targets
in the teacher cache, and the loss staying exact when rows without labels are mixed in."""

import json
import math

import pandas as pd
import pytest
import torch
from test_distill import distill_argv, distill_run, losses, params
from test_trainers import tiny_dataset, tiny_model

from hf_transfer.cli import main
from hf_transfer.distill.arguments import DistillationArguments
from hf_transfer.distill.transfer_set import augment_texts, embedding_neighbours, read_unlabeled, word_replacements
from hf_transfer.errors import DataError

# --- pure parts ------------------------------------------------------------------------------------------------------


def test_augmentation_is_seeded_and_deduplicated():
    texts = ["a good film", "a bad film", "good"]
    replacements = {"good": ["great", "fine"], "bad": ["poor"], "film": ["movie"]}
    first = augment_texts(texts, method="replace", p=0.5, factor=4, seed=3, replacements=replacements)
    assert first == augment_texts(texts, method="replace", p=0.5, factor=4, seed=3, replacements=replacements)
    made = [text for _, text in first]
    assert len(made) == len(set(made)) and not set(made) & set(texts)
    assert all(0 <= row < 3 for row, _ in first) and [row for row, _ in first] == sorted(row for row, _ in first)
    assert len(made) <= 4 * len(texts)
    for _, text in augment_texts(texts, method="delete", p=0.5, factor=3, seed=0):
        assert text and set(text.split()) <= {"a", "good", "bad", "film"}
    swapped = augment_texts(["one two three four"], method="swap", p=1.0, factor=1, seed=0)
    assert swapped == [(0, "two one four three")]
    # A row spaced oddly (double spaces, a trailing newline from a quoted CSV cell): a copy that changed no word is
    # that row spaced anew, and tokenizes to its ids; it was kept, and took the soft loss a second time.
    spaced = ["a  great film", "bad movie\n", " fine  acting "]
    unchanged = augment_texts(spaced, method="replace", p=0.5, factor=3, seed=0, replacements={})
    assert unchanged == []


def test_a_pairs_copies_perturb_both_texts_and_are_deduplicated_as_pairs():
    """A pair's copy changed its first text alone, and copies were deduplicated on that text: rows sharing a premise
    (one per hypothesis) lost their copies to the first row's."""
    texts = ["the cat sat on the mat"] * 2
    pairs = ["a cat is sitting down", "no animal is in the room"]
    copies = augment_texts(texts, method="swap", p=1.0, factor=1, seed=0, pairs=pairs)
    assert copies == [
        (0, "cat the on sat mat the", "cat a sitting is down"),
        (1, "cat the on sat mat the", "animal no in is room the"),
    ]
    made = augment_texts(texts, method="delete", p=0.5, factor=3, seed=1, pairs=pairs)
    assert made == augment_texts(texts, method="delete", p=0.5, factor=3, seed=1, pairs=pairs)
    assert len({tuple(c[1:]) for c in made}) == len(made) and not {tuple(c[1:]) for c in made} & set(
        zip(texts, pairs, strict=True)
    )
    assert any(copy[2] != pairs[copy[0]] for copy in made)
    assert augment_texts(["a b c"], method="swap", p=1.0, factor=1, seed=0) == [(0, "b a c")]  # single texts as before


def test_embedding_neighbours_are_nearest_whole_words_never_themselves(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    ids = tokenizer.convert_tokens_to_ids(["good", "film"])
    embeddings = torch.randn(tokenizer.vocab_size, 8)
    embeddings[ids[0]] = embeddings[ids[1]] + 1e-3  # "good" sits right next to "film"
    found = embedding_neighbours(embeddings, tokenizer, ids, k=3)
    assert found[ids[0]][0] == ids[1] and found[ids[1]][0] == ids[0]
    for neighbours in found.values():
        pieces = tokenizer.convert_ids_to_tokens(neighbours)
        assert all(p.isalpha() and not p.startswith("##") for p in pieces) and len(neighbours) == 3
    assert all(token not in found[token] for token in ids)


def test_augmented_copies_are_cached_per_teacher_tokenizer(tmp_path, tiny_bert_dir):
    """The copies replace words by their embedding neighbours read back through the teacher's tokenizer, so the same
    embeddings under another vocabulary make other copies: the cache key held the embeddings and not the tokenizer,
    and a teacher with another `teacher_tokenizer_name` was given the first one's copies."""
    from types import SimpleNamespace

    import datasets
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerFast

    from hf_transfer.distill.transfer_set import augmented_rows

    teacher = AutoModel.from_pretrained(tiny_bert_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "dull", "film", "show", "plot", "cast"]
    # The same words, numbered otherwise: another vocabulary over the very same embedding rows.
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "with", *reversed(words)])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    other = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    texts = [f"a {words[i % 12]} {words[(i + 5) % 12]} with {words[(i + 7) % 12]}" for i in range(12)]
    train = datasets.Dataset.from_dict({"text": texts, "label": [i % 2 for i in range(12)]})
    prepared = SimpleNamespace(datasets={"train": train}, text_column="text", text_pair_column=None)
    d = SimpleNamespace(augment_method="replace", augment_p=0.5, augment_factor=2, augment_neighbours=3)
    first = augmented_rows(prepared, d, teacher, tokenizer, seed=0)
    under_other = augmented_rows(prepared, d, teacher, other, seed=0)
    again = augmented_rows(prepared, d, teacher, tokenizer, seed=0)
    assert first.summary["hit"] is False and under_other.summary["hit"] is False and again.summary["hit"] is True
    assert under_other.summary["cache"] != first.summary["cache"] and again.texts == first.texts


def test_replacements_of_a_byte_level_bpe_teacher_are_whole_words():
    """For a RoBERTa or GPT-2 teacher, the candidates kept every alphabetic piece: word ends such as `ishing` or
    `ascinating` (BPE marks a word start, `Ġ`, not a continuation, as WordPiece's `##` does), so augmented copies
    read "the ascinating movie"; and a word was looked up alone, as the rare sentence-start `good`, not `Ġgood`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = "the movie film is good bad fun funny boring wonderful fascinating astonishing a and but".split()
    corpus = [" ".join(words[i % len(words) :] + words[: i % len(words)]) for i in range(200)]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>"], initial_alphabet=alphabet)
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>")
    torch.manual_seed(0)
    replacements = word_replacements(
        ["the movie is good", "a fascinating film"], tokenizer, torch.randn(len(tokenizer), 8), 40
    )
    assert {"good", "movie", "fascinating"} <= set(replacements)
    for options in replacements.values():  # each is one piece where a copy puts it, after a space
        assert options and all(len(tokenizer("a " + w, add_special_tokens=False)["input_ids"]) == 2 for w in options)


def test_unlabelled_files_are_read_with_the_text_column_and_counted(tmp_path):
    a = tmp_path / "a.csv"
    pd.DataFrame({"text": ["one", "", "two"], "other": [1, 2, 3]}).to_csv(a, index=False)
    b = tmp_path / "b.jsonl"
    b.write_text("\n".join(json.dumps({"text": t}) for t in ["three", "  "]))
    rows = read_unlabeled([str(a), str(b)], "text", None, "auto")
    assert rows.texts == ["one", "two", "three"] and rows.summary["dropped_empty"] == 2
    with pytest.raises(DataError, match="no column 'review'"):
        read_unlabeled([str(a)], "review", None, "auto")
    nested = tmp_path / "nested.jsonl"  # a JSON object in the text field, refused as in the training file
    nested.write_text("\n".join(json.dumps({"text": t}) for t in ["fine", {"title": "x"}]))
    with pytest.raises(DataError, match=r"unlabeled_file '.*nested.jsonl': text column 'text' holds a dict"):
        read_unlabeled([str(a), str(nested)], "text", None, "auto")
    blank = tmp_path / "blank.csv"  # every text empty: the file added no row, and nothing said so
    blank.write_text("text,other\n,1\n  ,2\n")
    with pytest.raises(DataError, match=r"unlabeled_file '.*blank.csv' has no row with text in column 'text' \(all 2"):
        read_unlabeled([str(a), str(blank)], "text", None, "auto")


def test_an_unlabelled_file_with_labels_is_warned_about_and_recorded(tmp_path, caplog):
    """A label column in an unlabelled file was dropped without a word: its rows get the soft loss only."""
    path = tmp_path / "u.csv"
    pd.DataFrame({"text": ["one", "two"], "label": ["pos", None]}).to_csv(path, index=False)
    with caplog.at_level("WARNING"):
        rows = read_unlabeled([str(path)], "text", None, "auto", "label")
    assert "has a 'label' column too" in caplog.text and "not read" in caplog.text
    assert rows.texts == ["one", "two"] and rows.summary["files"][0]["label_column_ignored"] == "label"
    caplog.clear()
    empty = tmp_path / "empty-labels.csv"  # an empty label column says nothing
    pd.DataFrame({"text": ["one"], "label": [None]}).to_csv(empty, index=False)
    rows = read_unlabeled([str(empty)], "text", None, "auto", "label")
    assert "label_column_ignored" not in rows.summary["files"][0] and not caplog.text


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"augment_factor": -1}, "augment_factor must be an integer >= 0"),
        ({"augment_p": 1.5}, r"augment_p must be in \[0, 1\]"),
        ({"unlabeled_file": "rows.txt"}, "unsupported extension"),
        ({"unlabeled_file": "not/here.csv"}, r"does not exist .*--unlabeled_file none"),
        ({"augment_factor": 2, "alpha": 0.0}, "alpha is 0"),
        ({"augment_factor": 2, "augment_p": 0.0}, "augment_p 0 changes no word"),  # it made no row, silently
        ({"hidden_loss_weight": 1.0, "cache_teacher_logits": True}, "hidden_loss_pooling"),
    ],
)
def test_transfer_set_arguments_are_checked(fields, match):
    from hf_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        DistillationArguments(teacher_model_name_or_path="t", **fields)


def test_unlabeled_file_none_drops_the_configs_files():
    for value in ("none", "None", "null"):
        assert DistillationArguments(teacher_model_name_or_path="t", unlabeled_file=value).unlabeled_file is None
    # ... so a no-KD twin of a config with unlabelled rows is one flag away.
    assert DistillationArguments(teacher_model_name_or_path="t", unlabeled_file="none", alpha=0.0).alpha == 0.0


# --- the trainer -----------------------------------------------------------------------------------------------------


def _with_unlabelled_rows(dataset):
    """Every third row loses its label: the transfer set's unlabelled part."""
    return dataset.map(lambda row, i: {"labels": -100 if i % 3 == 0 else row["labels"]}, with_indices=True)


def test_unlabelled_rows_keep_the_loss_exact_under_accumulation(tmp_path):
    dataset = _with_unlabelled_rows(tiny_dataset())
    kw = dict(cached=False, dataset=dataset)
    a = distill_run(tmp_path / "a", per_device_train_batch_size=8, gradient_accumulation_steps=1, **kw)
    b = distill_run(tmp_path / "b", per_device_train_batch_size=4, gradient_accumulation_steps=2, **kw)
    for name, value in params(a.model).items():
        torch.testing.assert_close(value, params(b.model)[name], atol=2e-6, rtol=1e-5, msg=name)
    # The rows without labels did train the student, through the soft loss.
    c = distill_run(tmp_path / "c", per_device_train_batch_size=8, cached=False, dataset=tiny_dataset())
    assert not all(torch.equal(v, params(c.model)[n]) for n, v in params(a.model).items())


def test_cached_pooled_hidden_targets_give_the_online_loss(tmp_path):
    from datasets import Dataset

    from hf_transfer.distill.teachers import teacher_outputs

    teacher, dataset = tiny_model(seed=1), tiny_dataset()
    distill = DistillationArguments(
        teacher_model_name_or_path="t", alpha=0.5, temperature=2.0, hidden_loss_weight=1.0, hidden_loss_pooling="cls"
    )

    class Tokenizer:  # ids only: the rows are already token ids
        def __call__(self, texts, pairs=None, truncation=True, max_length=None):
            return {"input_ids": [[int(t) for t in text.split()] for text in texts]}

        def pad(self, features, return_tensors="pt"):
            from test_trainers import _PadTokenizer

            return _PadTokenizer().pad(features, return_tensors=return_tensors)

    texts = [" ".join(map(str, row["input_ids"])) for row in dataset]
    logits, hidden = teacher_outputs(
        teacher, Tokenizer(), texts, None, batch_size=8, max_length=64, blocks=[0, 1], pooling="cls"
    )
    cached = Dataset.from_dict(
        {**dataset.to_dict(), "teacher_logits_0": logits.tolist(), "teacher_hidden_0": hidden.tolist()}
    )
    layer_map = {0: 0, 1: 1}
    online = distill_run(tmp_path / "o", cached=False, teacher=teacher, distill=distill, layer_map=layer_map)
    offline = distill_run(tmp_path / "c", cached=True, dataset=cached, distill=distill, layer_map=layer_map)
    assert losses(online, "loss_hidden") == pytest.approx(losses(offline, "loss_hidden"), rel=1e-4)
    assert losses(online) == pytest.approx(losses(offline), rel=1e-4)


# --- through the command line ----------------------------------------------------------------------------------------


def tiny_teacher(path, tiny_bert_dir, labels):
    """An untrained tiny classifier with these label names, saved with its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(path)
    return path


def _cached_with_unlabelled(teacher, tmp_path, out) -> tuple[list[str], list[str]]:
    """A one-block student distilled from `teacher` on tmp_path's train.csv and dev.csv, with the teacher's logits
    cached and more.csv's rows in the transfer set: the command and its distillation flags."""
    argv = distill_argv(teacher, tmp_path / "train.csv", tmp_path / "dev.csv", out, tmp_path / "cache")
    return argv, [
        "--student_layers",
        "[0]",
        "--cache_teacher_logits",
        "true",
        "--unlabeled_file",
        str(tmp_path / "more.csv"),
    ]


def test_distill_with_unlabelled_and_augmented_rows_and_cached_hidden_targets(tmp_path, tiny_bert_dir):
    teacher = tiny_teacher(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"])
    words = ["good", "great", "fine", "bad", "awful", "poor", "nice", "dull"]
    texts = [f"a {words[i % 8]} film with {words[(i + 3) % 8]} acting" for i in range(40)]
    labels = ["pos" if i % 8 in (0, 1, 2, 6) else "neg" for i in range(40)]
    pd.DataFrame({"text": texts[:32], "label": labels[:32]}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": texts[32:], "label": labels[32:]}).to_csv(tmp_path / "dev.csv", index=False)
    pd.DataFrame({"text": [f"some {w} show" for w in words] + [""]}).to_csv(tmp_path / "more.csv", index=False)
    out = tmp_path / "student"
    argv, extra = _cached_with_unlabelled(teacher, tmp_path, out)
    extra += ["--augment_factor", "2", "--hidden_loss_weight", "1", "--hidden_loss_pooling", "mean"]
    assert main([*argv, *extra]) == 0
    run_record = json.loads((out / "hf_transfer_run.json").read_text())
    record = run_record["distillation"]
    transfer = record["transfer_set"]
    assert transfer["labelled"] == 32 and transfer["unlabelled"] == 8 and 32 < transfer["augmented"] <= 64
    # The wall-time split and the cache's size: augmentation is built once, stored, and timed.
    augmentation = transfer["augmentation"]
    assert augmentation["disk_bytes"] > 0 and augmentation["hit"] is False and augmentation["build_seconds"] > 0
    total = 32 + 8 + transfer["augmented"]
    assert run_record["train_metrics"]["optimizer_steps"] == math.ceil(total / 8) * 1
    assert transfer["unlabelled_files"]["dropped_empty"] == 1
    cache = record["teacher_logit_cache"][0]
    assert cache["hidden_targets"] is True and cache["rows"] == 32 + 8 + transfer["augmented"]
    assert record["hidden_targets"] == "cached" and record["hidden_loss_pooling"] == "mean"
    card = (out / "README.md").read_text().lower()
    assert "augmented" in card and "unlabelled" in card


def test_validation_texts_among_the_unlabelled_rows_are_counted_and_the_card_names_the_cache(tmp_path, tiny_bert_dir):
    """Validation rows repeated in unlabeled_file trained the student on the teacher's labels for them, with no word:
    the overlap was counted against the labelled rows only."""
    teacher = tiny_teacher(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"])
    train = [(f"train row {i} was {'good' if i % 2 else 'bad'}", ["neg", "pos"][i % 2]) for i in range(16)]
    dev = [(f"held out {i} is {'good' if i % 2 else 'bad'}", ["neg", "pos"][i % 2]) for i in range(6)]
    pd.DataFrame(train, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(dev, columns=["text", "label"]).to_csv(tmp_path / "dev.csv", index=False)
    more = ["an unseen good one", "an unseen bad one", dev[0][0], dev[3][0]]
    pd.DataFrame({"text": more}).to_csv(tmp_path / "more.csv", index=False)
    out = tmp_path / "student"
    argv, extra = _cached_with_unlabelled(teacher, tmp_path, out)
    assert main([*argv, *extra]) == 0
    record = json.loads((out / "hf_transfer_run.json").read_text())
    assert record["data"]["validation"]["rows_sharing_train_input"] == 2
    cache = record["distillation"]["teacher_logit_cache"][0]
    card = (out / "README.md").read_text()
    assert f"| teacher logits | cached (built by this run): {cache['rows']:,} rows, " in card and cache["rows"] == 20
    assert "**validation**: 6 rows, none dropped; 2 with the same input as a training row" in card


def test_unlabelled_rows_that_repeat_an_input_enter_the_transfer_set_once(tmp_path, tiny_bert_dir, caplog):
    """Unlabelled rows were not deduplicated: a copy of a labelled row took the soft loss twice, and a row repeated in
    the file weighed double. Each input enters once; the repeats are counted in the record and the card."""
    teacher = tiny_teacher(tmp_path / "teacher", tiny_bert_dir, ["neg", "pos"])
    train = [(f"train row {i} was {'good' if i % 2 else 'bad'}", ["neg", "pos"][i % 2]) for i in range(16)]
    dev = [(f"held out {i} is {'good' if i % 2 else 'bad'}", ["neg", "pos"][i % 2]) for i in range(6)]
    pd.DataFrame(train, columns=["text", "label"]).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(dev, columns=["text", "label"]).to_csv(tmp_path / "dev.csv", index=False)
    more = ["a new good one", train[0][0], "a new bad one", "a new good one", train[5][0], "a third one"]
    pd.DataFrame({"text": more}).to_csv(tmp_path / "more.csv", index=False)
    out = tmp_path / "student"
    argv, extra = _cached_with_unlabelled(teacher, tmp_path, out)
    with caplog.at_level("WARNING"):
        assert main([*argv, *extra]) == 0
    assert "3 of the 6 unlabelled rows repeat a labelled row or an earlier row" in caplog.text
    record = json.loads((out / "hf_transfer_run.json").read_text())
    transfer = record["distillation"]["transfer_set"]
    assert transfer["unlabelled"] == 3 and transfer["repeats_dropped"] == {"unlabelled": 3}
    assert transfer["unlabelled_files"]["rows"] == 6  # what the file held, as read
    assert record["distillation"]["teacher_logit_cache"][0]["rows"] == 16 + 3
    assert (
        "16 labelled rows, 3 unlabelled rows, 0 augmented rows (3 repeating an earlier input dropped)"
        in (out / "README.md").read_text()
    )


def test_repeats_are_compared_as_pairs():
    import datasets

    from hf_transfer.distill.transfer_set import TransferRows, _without_repeats

    train = datasets.Dataset.from_dict({"a": ["p", "q"], "b": ["x", "y"]})
    part = TransferRows(["p", "p", "q", "q"], ["x", "z", "z", "z"])
    (kept,), dropped = _without_repeats(train, "a", "b", [("unlabelled", part)])
    assert kept[1].texts == ["p", "q"] and kept[1].pairs == ["z", "z"] and dropped == {"unlabelled": 2}
    assert _without_repeats(train, "a", None, [("unlabelled", TransferRows(["p"]))]) == ([], {"unlabelled": 1})


def test_distill_augments_both_texts_of_a_pair(tmp_path, tiny_bert_dir):
    """On pair data the stored augmented copies hold a second text of their own, perturbed, beside their first."""
    import datasets

    teacher = tiny_teacher(tmp_path / "teacher", tiny_bert_dir, ["no", "yes"])
    premises = [f"the {w} cat sat on the mat today" for w in ("black", "white", "small", "old")]
    rows = [(p, f"a cat sits here {i} words in this pair", ["no", "yes"][i % 2]) for i, p in enumerate(premises * 4)]
    frame = pd.DataFrame(rows, columns=["premise", "hypothesis", "label"])
    frame[:12].to_csv(tmp_path / "train.csv", index=False)
    frame[12:].to_csv(tmp_path / "dev.csv", index=False)
    out = tmp_path / "student"
    argv = distill_argv(teacher, tmp_path / "train.csv", tmp_path / "dev.csv", out, tmp_path / "cache")
    extra = ["--student_layers", "[0]", "--text_column_name", "premise", "--text_pair_column_name", "hypothesis"]
    assert main([*argv, *extra, "--augment_factor", "2", "--augment_method", "swap", "--augment_p", "0.5"]) == 0
    augmentation = json.loads((out / "hf_transfer_run.json").read_text())["distillation"]["transfer_set"]
    copies = datasets.Dataset.from_file(f"{augmentation['augmentation']['cache']}/data.arrow")
    assert len(copies) == augmentation["augmented"] > 0 and "pair" in copies.column_names
    originals = dict(zip(frame.index[:12], frame["hypothesis"][:12], strict=True))
    assert any(pair != originals[row] for pair, row in zip(copies["pair"], copies["source_row"], strict=True))


def test_an_unlabeled_file_without_the_second_text_names_text_pair_column_name(tmp_path):
    """An unlabelled file of pair data that lacked the pair column was said to be read with text_column_name."""
    path = tmp_path / "u.csv"
    pd.DataFrame({"premise": ["a b", "c d"], "hypotesis": ["e", "f"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="no column 'hypothesis'.*Did you mean 'hypotesis'.*text_pair_column_name: "):
        read_unlabeled([str(path)], "premise", "hypothesis", "auto")
    rows = read_unlabeled([str(path)], "premise", "hypotesis", "auto")
    assert rows.texts == ["a b", "c d"] and rows.pairs == ["e", "f"]
