"""The card's `language`: the field's check, the detection from the training text's writing system (and, for Latin
script, its commonest words), and the card of a run on Chinese reviews over a base model whose card says `en`."""

import json
import shutil

import pandas as pd
import pytest
from huggingface_hub.repocard import metadata_load

from hf_transfer.cli import main, parse_command_args
from hf_transfer.core.folders import CARD_DATA_FILE, RUN_RECORD_FILE
from hf_transfer.core.language import check_language, detect_language, language_record
from hf_transfer.errors import ConfigError

# Short reviews written for these tests, a few per language; the detection samples rows, so each set is repeated.
SAMPLES = {
    "zh": ["这部电影非常好看，演员的表演很出色。", "质量太差了，穿了一次就坏了，不推荐购买。",
           "物流很快，包装也很好，下次还会再来。", "故事情节有点无聊，但是音乐很好听。"],
    "ja": ["この映画はとても面白かったです。", "サイズが小さすぎて、すぐに返品しました。",
           "配送が早くて、品質も良いと思います。", "ストーリーは退屈でしたが、音楽は素晴らしかった。"],
    "ko": ["이 영화는 정말 재미있었어요.", "품질이 너무 나빠서 실망했습니다.", "배송이 빠르고 포장도 좋았어요."],
    "ru": ["Этот фильм был очень хорошим, актёры играли прекрасно.", "Качество ужасное, не рекомендую покупать.",
           "Доставка быстрая, упаковка отличная."],
    "uk": ["Цей фільм був дуже гарним, актори грали чудово.", "Якість жахлива, не раджу купувати її.",
           "Доставка швидка, пакування чудове, дякую їм."],
    "ar": ["هذا الفيلم كان رائعا جدا والممثلون ممتازون.", "الجودة سيئة للغاية ولا أنصح بالشراء.",
           "التوصيل سريع والتغليف جيد."],
    "en": ["The film is a charming and often affecting journey.", "It was too small, so I sent it back.",
           "This is the best dress I have ever had, and it fits well.", "Not worth the money at all."],
    "fr": ["Le film est très beau et les acteurs sont excellents.", "La qualité est mauvaise, je ne recommande pas.",
           "Une robe pour les soirées, elle est parfaite avec des chaussures."],
    "de": ["Der Film ist sehr schön und die Schauspieler sind gut.", "Die Qualität ist nicht gut, ich bin enttäuscht.",
           "Das Kleid passt mir sehr gut und ist auch bequem."],
}  # fmt: skip


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_detects_the_language_of_each_script(code):
    found = detect_language(SAMPLES[code] * 20)
    assert found["language"] == code, found


def test_japanese_kanji_without_kana_is_not_japanese_and_chinese_is_not_english():
    mixed = SAMPLES["zh"] * 20 + ["Great value, fast shipping."] * 5  # a few English rows among Chinese ones
    assert detect_language(mixed)["language"] == "zh"
    assert detect_language(SAMPLES["ja"] * 20)["script"] == "kana+han"


@pytest.mark.parametrize(
    "texts,reason",
    [
        (["SKU-4471 blk/XL qty 3"] * 100, "match no language"),  # Latin script, but no language's words
        (["Bom dia"] * 3, "only"),  # too little text to say anything
        # Han rows short of most, the rest spread thin over three other scripts
        (SAMPLES["zh"] * 8 + (SAMPLES["ru"] + SAMPLES["ko"] + SAMPLES["ar"]) * 3, "no single writing system holds"),
        (["12345 !!! ???"] * 100, "only 0 letters"),
    ],
)
def test_unclear_text_gets_no_language(texts, reason):
    found = detect_language(texts)
    assert found["language"] is None and reason in found["reason"], found


def test_text_in_several_writing_systems_is_multilingual():
    """Chinese and Russian reviews side by side: the card took the base model's `en` (no language detected)."""
    found = detect_language(SAMPLES["zh"] * 10 + SAMPLES["ru"] * 10)
    assert found["language"] == "multilingual" and "several writing systems" in found["reason"], found


def test_english_of_sst2_is_detected(data_root):
    dev = pd.read_csv(data_root / "sst2" / "dev.tsv", sep="\t", quoting=3)
    found = detect_language(list(dev["sentence"]))
    assert found["language"] == "en" and found["script"] == "latin" and found["rows"] == len(dev)


def test_language_field_is_checked():
    assert check_language("ZH") == "zh" and check_language(["en", "fr"]) == ["en", "fr"]
    assert check_language("fra") == "fra" and check_language("multilingual") == "multilingual"
    for bad in ("English", "e", "en_US", ["en", 5], [], ""):
        with pytest.raises(ConfigError, match="ISO 639 code"):
            check_language(bad)
    _, data, _, _ = parse_command_args("train", ["--language", "[zh, en]", "--output_dir", "o"])
    assert data.language == ["zh", "en"]
    _, data, _, _ = parse_command_args("train", ["--language", "ja", "--output_dir", "o"])
    assert data.language == "ja"


def test_the_field_wins_over_the_detection():
    record = language_record("ja", SAMPLES["zh"] * 20)
    assert record["value"] == "ja" and record["source"] == "config" and record["detected"]["language"] == "zh"
    record = language_record(None, SAMPLES["zh"] * 20)
    assert record["value"] == "zh" and record["source"] == "detected"
    assert language_record(None, ["?"])["value"] is None


@pytest.fixture(scope="module")
def chinese_runs(tmp_path_factory, tiny_bert_dir):
    """A tiny BERT whose card says `language: en`, trained on Chinese reviews: once as given, once with the
    language field set."""
    root = tmp_path_factory.mktemp("language")
    base = root / "base"
    shutil.copytree(tiny_bert_dir, base)
    (base / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# tiny\n")
    texts = [text + f" {i}" for i in range(12) for text in SAMPLES["zh"]]
    labels = ["pos", "neg", "pos", "neg"] * 12
    pd.DataFrame({"text": texts[:40], "label": labels[:40]}).to_csv(root / "train.csv", index=False)
    pd.DataFrame({"text": texts[40:], "label": labels[40:]}).to_csv(root / "dev.csv", index=False)
    runs = {}
    for name, extra in (("detected", []), ("given", ["--language", "[zh, en]"])):
        out = root / name
        argv = ["train", "--model_name_or_path", str(base), "--train_file", str(root / "train.csv"),
                "--validation_file", str(root / "dev.csv"), "--output_dir", str(out), "--num_train_epochs", "1",
                "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", *extra]  # fmt: skip
        assert main(argv) == 0
        runs[name] = out
    return runs


def test_a_chinese_review_set_is_not_labelled_english(chinese_runs):
    out = chinese_runs["detected"]
    meta = metadata_load(out / "README.md")
    assert meta["language"] == "zh" and meta["license"] == "mit"  # the license still comes from the base model
    record = json.loads((out / RUN_RECORD_FILE).read_text())["language"]
    assert record["value"] == "zh" and record["source"] == "detected" and record["detected"]["script"] == "han"
    card_data = json.loads((out / CARD_DATA_FILE).read_text())
    assert card_data["language"] == "zh" and card_data["language_source"] == "detected"


def test_the_language_field_goes_on_the_card(chinese_runs):
    out = chinese_runs["given"]
    assert metadata_load(out / "README.md")["language"] == ["zh", "en"]
    card_data = json.loads((out / CARD_DATA_FILE).read_text())
    assert card_data["language"] == ["zh", "en"] and card_data["language_source"] == "config"
