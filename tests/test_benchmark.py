"""The benchmark script's pure parts: settings, ratios against goals, Markdown and chart; not the heavy runs."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import assert_picture

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "benchmark.py"


def load_script(name: str):
    """A script under scripts/ as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmark")


def fake_results() -> dict:
    lora = {"training_peak_above_loaded_kib": 50_000, "child_peak_rss_kib": 900_000, "samples_per_second": 120.0}
    lora_gc = {"training_peak_above_loaded_kib": 30_000, "samples_per_second": 70.0}
    full = {"training_peak_above_loaded_kib": 100_000, "child_peak_rss_kib": 1_000_000, "samples_per_second": 100.0}
    lora_release = {"training_peak_above_loaded_kib": 24_000, "samples_per_second": 84.0}
    full_release = {"training_peak_above_loaded_kib": 40_000, "samples_per_second": 70.0}
    return {
        "P1": {
            "hf_transfer": [{"samples_per_second": 98.0, "eval_accuracy": 0.8}, {"samples_per_second": 96.0}],
            "stock": [{"samples_per_second": 100.0}, {"samples_per_second": 100.0}],
            "plain": [{"samples_per_second": 110.0}, {"samples_per_second": 90.0}],
        },
        "P2": {
            "cached": [{"total_seconds": 80.0, "cache_build_seconds": 10.0}],
            "online": [{"total_seconds": 100.0}],
            "alpha0": [{"total_seconds": 65.0}],
        },
        "P3": {
            "cached_4": [{"later_epoch_seconds": 7.0}],
            "naive_4": [{"later_epoch_seconds": 10.0}],
            "cached_5": [{"later_epoch_seconds": 3.0}],
            "naive_5": [{"later_epoch_seconds": 10.0}],
        },
        "P4": {"student": [{"speedup": 1.9, "teacher_eval_accuracy": 0.9, "student_eval_accuracy": 0.88}]},
        "P5": {
            "lora": [lora],
            "lora_gc": [lora_gc],
            "full": [full],
            "lora_release": [lora_release],
            "full_release": [full_release],
        },
    }


def test_ratios_are_medians_against_goals(bench):
    rows = {row["name"]: row for row in bench.build_ratio_rows(fake_results())}
    p1 = rows["P1 throughput hf-transfer / stock Trainer"]
    assert p1["value"] == pytest.approx(0.97) and p1["status"] == "pass"  # median 97 / median 100
    assert rows["P1 throughput hf-transfer / plain PyTorch loop"]["status"] == ""  # no goal
    assert rows["P2 wall cached / (teacher pass + plain fine-tune)"]["value"] == pytest.approx(80 / 75)
    assert rows["P2 wall cached / (teacher pass + plain fine-tune)"]["status"] == "miss"
    assert rows["P2 wall cached / online teacher"]["status"] == "pass"
    assert rows["P2 wall limit / online teacher (best possible)"]["value"] == pytest.approx(0.75)
    assert rows["P3 epoch 2+ time cached / naive, 4 of 6 frozen"]["status"] == "miss"  # 0.7 > 0.62
    five = rows["P3 epoch 2+ time cached / naive, 5 of 6 frozen"]
    assert five["value"] == pytest.approx(0.3) and five["status"] == "pass"  # <= 0.42
    assert rows["P4 inference speed 3-layer student / 6-layer teacher"]["status"] == "pass"
    assert rows["P5 training peak above loaded model LoRA / full"]["value"] == pytest.approx(0.5)
    assert rows["P5 throughput LoRA / full"]["value"] == pytest.approx(1.2)
    gc_memory = rows["P5 training peak above loaded model LoRA + gradient checkpointing / full"]
    assert gc_memory["value"] == pytest.approx(0.3) and gc_memory["status"] == "pass"  # <= 0.52
    assert rows["P5 throughput LoRA + gradient checkpointing / full"]["value"] == pytest.approx(0.7)
    released = rows["P5 training peak above loaded model LoRA / full, both with release_freed_memory"]
    assert released["value"] == pytest.approx(0.6) and released["status"] == "pass"  # 24k / 40k, <= 0.75
    assert rows["P5 throughput LoRA / full, both with release_freed_memory"]["value"] == pytest.approx(1.2)
    assert rows["P5 throughput LoRA with release_freed_memory / LoRA"]["value"] == pytest.approx(0.7)
    assert "BF16 throughput bf16 / fp32 (CPU)" not in rows  # not run, so not reported


def test_missing_measurement_is_not_a_pass(bench):
    results = {"P1": {"hf_transfer": [{"samples_per_second": None}], "stock": [{"samples_per_second": 1.0}]}}
    row = bench.build_ratio_rows(results)[0]
    assert row["value"] is None and row["status"] == "n/a"
    assert bench.goal_status(0.6, "<=", 0.6) == "pass" and bench.goal_status(1.0, "<", 1.0) == "miss"


def test_markdown_and_chart(bench, tmp_path):
    results = fake_results()
    report = {
        "command": "python scripts/benchmark.py --mode smoke",
        "settings": {**bench.PRESETS["smoke"], "mode": "smoke", "only": ["P1", "P2"]},
        "machine": {"cpu": "Fake CPU", "cores": 2, "torch": "0.0"},
        "ratios": bench.build_ratio_rows(results),
        "configs": bench.config_rows(results),
        "speed": bench.speed_rows(results),
        "notes": ["a note"],
    }
    text = bench.render_markdown(report)
    assert "| P1 throughput hf-transfer / stock Trainer | 0.970 | >= 0.97 | pass |" in text
    assert "| P1 | hf_transfer | 2 | 97.0 |" in text
    assert "- cpu: Fake CPU" in text and "python scripts/benchmark.py --mode smoke" in text
    assert "64 SST-2 training rows" in text
    assert "| teacher | — | 0.9000 |" in text and "| P4 | student |" not in text
    bench.plot_ratios(report["ratios"], tmp_path / "chart.png")
    assert_picture(tmp_path / "chart.png")


def test_settings_presets_and_overrides(bench):
    args = bench.build_parser().parse_args(["--mode", "quick", "--train_rows", "100", "--only", "p1,P3"])
    settings = bench.resolve_settings(args)
    assert settings["train_rows"] == 100 and settings["repeats"] == bench.PRESETS["quick"]["repeats"]
    assert settings["only"] == ["P1", "P3"]
    with pytest.raises(SystemExit, match="--only got unknown comparison"):
        bench.parse_only("P9")
    with pytest.raises(SystemExit, match="--freeze_epochs must be at least 2"):
        bench.resolve_settings(argparse.Namespace(**{**vars(args), "freeze_epochs": 1}))


def test_subsets_keep_quotes_as_text(bench, tmp_path):
    source = tmp_path / "data" / "sst2"
    source.mkdir(parents=True)
    for split in ("train", "dev"):
        (source / f"{split}.tsv").write_text('sentence\tlabel\na "quoted start \t1\nplain \t0\nthird \t1\n')
    train, dev = bench.write_subsets(tmp_path / "data", tmp_path / "out", 2, 1)
    assert bench.read_tsv(str(train)) == (['a "quoted start ', "plain "], [1, 0])
    assert bench.read_tsv(str(dev)) == (['a "quoted start '], [1])


def test_help_runs():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "--mode" in result.stdout and "--only" in result.stdout


def test_profile_stacks_sorts_training_loop_samples(tmp_path):
    spec = importlib.util.spec_from_file_location("profile_stacks", REPO / "scripts" / "profile_stacks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    loop = "main (hf_transfer/cli.py:1);Trainer._inner_training_loop (transformers/trainer.py:1660)"
    step = f"{loop};TransferTrainer.compute_loss (hf_transfer/trainers.py:150)"
    model = "BertForSequenceClassification.forward (transformers/models/bert/modeling_bert.py:1)"
    stacks = tmp_path / "stacks.txt"
    stacks.write_text(
        "\n".join(
            [
                "main (hf_transfer/cli.py:1);load (transformers/modeling_utils.py:3) 500",  # outside the loop
                f"{step};{model};BertModel.forward (transformers/models/bert/modeling_bert.py:2);"
                "BertEncoder.forward (transformers/models/bert/modeling_bert.py:3) 60",
                f"{step} 5",
                f"{loop};Accelerator.backward (accelerate/accelerator.py:9);backward (torch/_tensor.py:1) 25",
                f"{loop};AdamW.step (torch/optim/adamw.py:5) 10",
            ]
        )
        + "\n"
    )
    s = module.summarise(str(stacks))
    assert s["total"] == 100
    assert dict(s["categories"]) == {
        "model forward": 60,
        "our own Python (innermost frame in hf_transfer/)": 5,
        "backward": 25,
        "optimizer step": 10,
    }
    assert dict(s["forward"]) == {"BertModel.forward > BertEncoder.forward": 60}
    assert dict(s["ours"]) == {"hf_transfer/trainers.py: TransferTrainer.compute_loss": 5}


# --- FEWSHOT: the few-shot route against SetFit ---------------------------------------------------------------------


def test_fewshot_sample_is_seeded_balanced_and_skips_short_texts(bench):
    texts = [f"word {'x ' * (i % 7)}".strip() for i in range(200)]  # 1 to 7 words
    labels = ["a", "b"] * 100
    picked = bench.few_shot_sample(texts, labels, k=5, seed=0)
    assert picked == bench.few_shot_sample(texts, labels, k=5, seed=0)
    assert picked != bench.few_shot_sample(texts, labels, k=5, seed=1)
    assert sorted(labels[i] for i in picked) == ["a"] * 5 + ["b"] * 5
    assert all(len(texts[i].split()) >= bench.FEWSHOT_MIN_WORDS for i in picked)
    with pytest.raises(SystemExit, match=r"words; 60 are needed"):
        bench.few_shot_sample(texts, labels, k=60, seed=0)


def test_clothing_held_out_sample_is_fixed_and_disjoint(bench):
    held_out, pool = bench.held_out_split(100, 30)
    assert (held_out, pool) == bench.held_out_split(100, 30)
    assert len(held_out) == 30 and not set(held_out) & set(pool) and len(pool) == 70


def test_fewshot_table_and_goals(bench):
    results = {
        "sst2_k8_hf_transfer": [{"accuracy": 0.70, "train_seconds": 10.0}, {"accuracy": 0.74, "train_seconds": 12.0}],
        "sst2_k8_setfit": [{"accuracy": 0.68, "train_seconds": 20.0}, {"accuracy": 0.70, "train_seconds": 24.0}],
        "clothing_k8_hf_transfer": [{"f1_macro": 0.40, "train_seconds": 30.0}],
        "clothing_k8_setfit": [{"f1_macro": 0.50, "train_seconds": 20.0}],
    }
    rows = {row["name"]: row for row in bench.build_ratio_rows({"FEWSHOT": results})}
    accuracy = rows["FEWSHOT sst2 K=8 mean accuracy hf-transfer / SetFit"]
    assert accuracy["value"] == pytest.approx(0.72 / 0.69) and accuracy["status"] == "pass"
    time_row = rows["FEWSHOT sst2 K=8 training time hf-transfer / SetFit"]
    assert time_row["value"] == pytest.approx(11 / 22) and time_row["status"] == "pass"
    assert rows["FEWSHOT clothing K=8 mean f1_macro hf-transfer / SetFit"]["status"] == "miss"
    assert rows["FEWSHOT clothing K=8 training time hf-transfer / SetFit"]["status"] == "miss"
    text = "\n".join(bench.render_fewshot(results))
    assert "| sst2 | 8 | hf_transfer | accuracy | 0.7200 ± 0.0283 | 0.7000, 0.7400 | 11.0 ± 1.4 |" in text
    assert bench.config_rows({"FEWSHOT": results}) == []  # its own table, not the per-configuration one
    assert "FEWSHOT" not in bench.parse_only(None) and bench.parse_only("fewshot") == ["FEWSHOT"]


def test_fewshot_tasks_narrow_the_mode_preset(bench):
    parse = bench.build_parser().parse_args
    full = bench.resolve_settings(parse(["--mode", "full", "--only", "FEWSHOT"]))
    assert full["fewshot"]["tasks"] == ("sst2", "clothing") and full["fewshot"]["ks"] == (8, 32)
    narrowed = bench.resolve_settings(parse(["--mode", "full", "--only", "FEWSHOT", "--fewshot_tasks", "sst2"]))
    assert narrowed["fewshot"]["tasks"] == ("sst2",) and narrowed["fewshot"]["seeds"] == (0, 1, 2)
    assert bench.FEWSHOT_PRESETS["full"]["tasks"] == ("sst2", "clothing")  # the preset itself is left alone
    with pytest.raises(SystemExit, match="fewshot_tasks"):
        bench.resolve_settings(parse(["--mode", "full", "--fewshot_tasks", "imdb"]))
    only_32 = bench.resolve_settings(parse(["--mode", "full", "--only", "FEWSHOT", "--fewshot_k", "32"]))
    assert only_32["fewshot"]["ks"] == (32,) and bench.FEWSHOT_PRESETS["full"]["ks"] == (8, 32)
    for bad in ("0", "eight", ","):
        with pytest.raises(SystemExit, match="fewshot_k"):
            bench.resolve_settings(parse(["--mode", "full", "--fewshot_k", bad]))
    chosen = bench.resolve_settings(parse(["--mode", "full", "--fewshot_seeds", "3,4", "--fewshot_systems",
                                           "hf_transfer,setfit_template"]))  # fmt: skip
    assert chosen["fewshot"]["seeds"] == (3, 4) and chosen["fewshot"]["systems"] == ("hf_transfer", "setfit_template")
    assert bench.FEWSHOT_PRESETS["full"]["seeds"] == (0, 1, 2) and "systems" not in bench.FEWSHOT_PRESETS["full"]
    for flag, bad in (("--fewshot_seeds", "-1"), ("--fewshot_seeds", "x"), ("--fewshot_systems", "trl")):
        with pytest.raises(SystemExit, match=flag.lstrip("-")):
            bench.resolve_settings(parse(["--mode", "full", flag, bad]))


def test_few_shot_sweep_variants_and_selection_sample_are_apart_from_what_is_reported(tmp_path):
    spec = importlib.util.spec_from_file_location("few_shot_sweep", REPO / "scripts" / "few_shot_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    assert sweep.parse_variant("base=") == ("base", [])
    assert sweep.parse_variant("e32=--few_shot_body_epochs,32") == ("e32", ["--few_shot_body_epochs", "32"])
    assert sweep.parse_variant("pkd=--layer_map,[1,3,5],--alpha,0.9") == (
        "pkd",
        ["--layer_map", "[1,3,5]", "--alpha", "0.9"],
    )
    for bad in ("=--x,1", "odd=--few_shot_body_epochs", "noflag=few_shot_body_epochs,32"):
        with pytest.raises(SystemExit, match="--variant"):
            sweep.parse_variant(bad)
    # The selection sample is drawn from the training pool with its own seed, so it differs from the benchmark's
    # clothing evaluation sample, and no training draw of the sweep can touch it.
    bench = sweep._benchmark()
    held, pool = bench.held_out_split(5000, 500, seed=sweep.SELECTION_SEED)
    benchmark_held, _ = bench.held_out_split(5000, 500)
    assert held != benchmark_held and not set(held) & set(pool) and len(held) + len(pool) == 5000
    # --selection_min_words: the sample is drawn among whole sentences only, and the pool keeps every other row.
    data = tmp_path / "data" / "sst2"
    data.mkdir(parents=True)
    rows = [f"short {i}\t{i % 2}" if i % 3 else f"a whole sentence of seven words {i}\t{i % 2}" for i in range(90)]
    (data / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    texts, labels, selection = sweep.selection_data(bench, data.parent, tmp_path, "sst2", 20, min_words=6)
    chosen = pd.read_csv(selection)
    assert len(chosen) == 20 and all(len(t.split()) >= 6 for t in chosen["text"])
    assert len(texts) == len(labels) == 70 and not set(texts) & set(chosen["text"])
    # --drop_selection_spans: the pool loses the phrases of the held-out sentences (as SST-2's parse-tree rows are),
    # runs of N+ words only, and keeps the rest.
    sentences = [f"the film {w} is a quiet triumph of craft" for w in ("alpha", "beta", "gamma", "delta")]
    phrases = ["quiet triumph of craft", "is a quiet", "a quiet  triumph", "triumph", "the film", "the film omega is"]
    (data / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t1\n" for t in [*sentences, *phrases]))
    kept, _, selection = sweep.selection_data(bench, data.parent, tmp_path, "sst2", 4, min_words=6, drop_spans=3)
    assert set(pd.read_csv(selection)["text"]) == set(sentences)
    assert kept == ["triumph", "the film", "the film omega is"]


def test_distill_sweep_twin_drops_every_distillation_flag_and_keeps_the_steps():
    spec = importlib.util.spec_from_file_location("distill_sweep", REPO / "scripts" / "distill_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    flags = ["--alpha", "0.9", "--temperature", "5", "--augment_factor", "2", "--learning_rate", "1e-4",
             "--hidden_loss_weight", "10", "--max_steps", "99", "--num_train_epochs", "3"]  # fmt: skip
    twin = sweep.twin_flags(flags, 750)
    assert twin == ["--learning_rate", "1e-4", "--num_train_epochs", "3", "--alpha", "0", "--max_steps", "750",
                    "--unlabeled_file", "none"]  # fmt: skip
    # Every distillation field the twin drops is a real field of `hf-transfer distill`.
    from hf_transfer.distill.arguments import DistillationArguments

    fields = {f"--{name}" for name in DistillationArguments.__dataclass_fields__}
    assert sweep.KD_FLAGS <= fields


def test_a_fewshot_only_report_has_no_empty_comparison_table(bench):
    fewshot = {
        f"sst2_k8_{system}": [
            {"seed": s, "accuracy": 0.6 + 0.01 * s + bonus, "f1_macro": 0.6, "train_seconds": 8.0} for s in range(3)
        ]  # fmt: skip
        for system, bonus in (("hf_transfer", 0.02), ("setfit", 0.0))
    }
    results = {"FEWSHOT": fewshot}
    report = {
        "command": "python scripts/benchmark.py --mode full --only FEWSHOT",
        "settings": {**bench.PRESETS["full"], "mode": "full", "only": ["FEWSHOT"]},
        "machine": {"cpu": "Fake CPU"},
        "ratios": bench.build_ratio_rows(results),
        "configs": bench.config_rows(results),
        "speed": bench.speed_rows(results),
        "notes": [],
        "results": results,
    }
    text = bench.render_markdown(report)
    assert "| comparison | configuration |" not in text
    assert "| FEWSHOT sst2 K=8 mean accuracy hf-transfer / SetFit | 1.033 | >= 1.0 | pass |" in text
    assert "| sst2 | 8 | hf_transfer | accuracy | 0.6300 ± 0.0100 |" in text


def test_memory_budget_counts_each_saved_storage_once():
    import torch

    budget = load_script("memory_budget")

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            return {"out": (x @ self.w) + (x @ self.w.T)}

    x = torch.ones(8, 4, requires_grad=True)
    # x (128 bytes) is saved by both products and counted once; the weight and its transpose view (64 bytes, one
    # storage) too.
    assert budget.saved_bytes(Twice(), {"x": x}) == 8 * 4 * 4 + 4 * 4 * 4


def test_memory_budget_orders_full_lora_and_lora_without_dropout(tiny_bert_dir, tmp_path, capsys):
    import torch

    budget = load_script("memory_budget")
    data = tmp_path / "rows.tsv"
    sentences = [f"a short sentence number {i} about a film that was {'good' if i % 2 else 'bad'}" for i in range(40)]
    data.write_text("sentence\tlabel\n" + "".join(f"{s} \t{i % 2}\n" for i, s in enumerate(sentences)))
    assert budget.main(["--model", str(tiny_bert_dir), "--data", str(data), "--rows", "40", "--batch_size", "8"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert {"full", "lora", "lora_dropout0"} <= set(lines)
    assert 0 < float(lines["limit"].split(":")[-1]) < 1
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(tiny_bert_dir)(sentences[:8], padding=True, return_tensors="pt")
    batch["labels"] = torch.zeros(8, dtype=torch.long)
    saved = {
        kind: budget.saved_bytes(budget.build(str(tiny_bert_dir), kind), batch)
        for kind in ("full", "lora", "lora_dropout0")
    }
    # Dropout on the adapter's input keeps a copy of it (and a mask) per adapted projection; frozen projections keep
    # no input for a weight gradient.
    assert saved["full"] > saved["lora"] > saved["lora_dropout0"] > 0


def test_p3_limit_times_naive_trunk_and_cached_steps_on_the_same_batches(tiny_bert_dir, tmp_path, capsys):
    limit = load_script("p3_limit")
    data = tmp_path / "rows.tsv"
    sentences = [
        f"sentence number {i} about a film that was {'good' if i % 2 else 'bad'} " * (1 + i % 3) for i in range(48)
    ]
    data.write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(sentences)))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    steps = limit.batches(tokenizer, limit.read_rows(str(data), 48), 8, 32, seed=0)
    assert len(steps) == 6 and all(b["input_ids"].shape[1] <= 32 for b in steps)
    assert sorted(torch_cat_labels(steps)) == sorted(i % 2 for i in range(48))  # every row once, shuffled
    result = limit.measure(str(tiny_bert_dir), 1, steps)
    assert result["steps"] == 3  # 3 warm-up batches left out
    assert all(v > 0 for v in result["seconds"].values())
    assert 0 < result["limit"] < 1 and result["cached_over_naive"] > 0
    assert limit.main(["--model", str(tiny_bert_dir), "--data", str(data), "--rows", "48", "--batch_size", "8",
                       "--frozen_blocks", "1"]) == 0  # fmt: skip
    assert "k=1: limit" in capsys.readouterr().out


def torch_cat_labels(steps) -> list[int]:
    return [int(v) for b in steps for v in b["labels"]]


def test_merge_builds_one_report_from_runs_of_different_comparisons(bench, tmp_path):
    results = fake_results()

    def report(comparisons, repeats, command, **settings):
        return {
            "command": command,
            "settings": {**bench.PRESETS["full"], "mode": "full", "only": comparisons, "repeats": repeats, **settings},
            "machine": {"cpu": "Fake CPU"},
            "results": {c: results[c] for c in comparisons},
            "notes": ["shared note", f"note of {command}"],
        }

    p1 = report(["P1"], 5, "python scripts/benchmark.py --only P1 --repeats 5")
    rest = report(["P3", "P5"], 3, "python scripts/benchmark.py --only P3,P5")
    paths = []
    for i, r in enumerate((p1, rest)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(r))
    assert bench.main(["--merge", *map(str, paths), "--output_dir", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "benchmark_results.json").read_text())
    assert merged["settings"]["only"] == ["P1", "P3", "P5"] and merged["settings"]["repeats"] == "P1: 2, P3: 1, P5: 1"
    names = {row["name"]: row["value"] for row in merged["ratios"]}
    assert names["P1 throughput hf-transfer / stock Trainer"] == pytest.approx(0.97)
    assert names["P3 epoch 2+ time cached / naive, 4 of 6 frozen"] == pytest.approx(0.7)
    assert merged["notes"] == ["shared note", f"note of {p1['command']}", f"note of {rest['command']}"]
    assert merged["merged_from"] == [p1["command"], rest["command"]]
    text = (tmp_path / "merged" / "benchmark_results.md").read_text()
    assert "P1: 2, P3: 1, P5: 1 repeat(s)" in text and (tmp_path / "merged" / "benchmark_results.png").is_file()
    with pytest.raises(SystemExit, match="P3 was measured by more than one run"):
        bench.merge_reports([rest, report(["P3"], 2, "again")])
    again = report(["P3"], 2, "again")
    again["results"]["P3"] = {**results["P3"], "cached_4": [{"later_epoch_seconds": 5.0}]}
    newer = bench.merge_reports([rest, again], replace=True)  # the later run's P3 wins; P5 stays
    ratios = {row["name"]: row["value"] for row in newer["ratios"]}
    assert ratios["P3 epoch 2+ time cached / naive, 4 of 6 frozen"] == pytest.approx(0.5)
    assert "P5 training peak above loaded model LoRA / full" in ratios
    assert newer["notes"][-1] == "P3: the measurements of `again` replace an earlier run's."
    with pytest.raises(SystemExit, match="differ in train_rows"):
        bench.merge_reports([p1, report(["P3"], 3, "other size", train_rows=8000)])


def test_unlabeled_sentences_reads_train_only_dedups_and_seeds(tmp_path):
    script = load_script("unlabeled_sentences")
    domain = tmp_path / "blitzer" / "dvd"
    domain.mkdir(parents=True)
    review = 'A fine film with a strong cast. Too short!  It was "great" fun, I said.\nThe end.'
    pd.DataFrame({"sentence": [review, review.upper()], "label": [1, 1]}).to_csv(domain / "train.tsv", sep="\t")
    pd.DataFrame({"sentence": ["A dev sentence that must never be read."], "label": [0]}).to_csv(
        domain / "dev.tsv", sep="\t"
    )
    assert script.review_sentences(review, 3, 60) == [
        "A fine film with a strong cast.",
        'It was "great" fun, I said.',
    ]
    out = tmp_path / "u.csv"
    args = ["--data_dir", str(tmp_path), "--domains", "dvd", "--min_words", "3", "--column", "text"]
    assert script.main([*args, "--output", str(out)]) == 0
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["text"]
    assert sorted(rows.text) == ["A fine film with a strong cast.", 'It was "great" fun, I said.']
    again = tmp_path / "v.csv"
    assert script.main([*args, "--output", str(again), "--max_rows", "1"]) == 0
    assert pd.read_csv(again).text.tolist() == rows.text.tolist()[:1]
    assert script.main([*args[:-2], "--domains", "books", "--output", str(tmp_path / "w.csv")]) == 2


def test_config_sweep_draws_its_selection_from_train_never_the_reported_validation(tmp_path):
    script = load_script("config_sweep")
    ratings = [1, 2, 3, 4, 5] * 40
    frame = pd.DataFrame(
        {
            "Review Text": [f"review number {i} says {r} stars" for i, r in enumerate(ratings)],
            "Title": [None if i % 7 == 0 else f"title {i}" for i in range(len(ratings))],
            "Rating": ratings,
        }
    )
    data = tmp_path / "reviews.csv"
    frame.to_csv(data, index=False)
    config = tmp_path / "reviews.yaml"
    config.write_text(
        f"model_name_or_path: unused\ntrain_file: {data}\ntext_column_name: Review Text\nlabel_column_name: Rating\n"
        "label_mapping: {1: bad, 2: bad, 3: neutral, 4: good, 5: good}\nvalidation_split_percentage: 10\n"
        f"output_dir: {tmp_path / 'out'}\nseed: 42\n"
    )
    prepared, data_args = script.training_rows(str(config), "Title")
    train, names = prepared.datasets["train"], prepared.label_names
    text, pair = prepared.text_column, prepared.text_pair_column
    assert (names, text, pair) == (["bad", "neutral", "good"], "Review Text", "Title")
    assert prepared.summary["columns"]["label"] == "Rating"
    assert len(train) == 180  # 10% went to the config's own validation split
    from hf_transfer.core.arguments import DataArguments
    from hf_transfer.core.data import load_data

    fields = {"train_file": str(data), "text_column_name": "Review Text", "label_column_name": "Rating",
              "label_mapping": data_args.label_mapping, "validation_split_percentage": 10}  # fmt: skip
    reported = set(load_data(DataArguments(**fields), seed=42).datasets["validation"]["Review Text"])
    labels = train["labels"]
    held = script.stratified_sample(pd.Series(labels).to_numpy(), 40, seed=1)
    assert list(held) == list(script.stratified_sample(pd.Series(labels).to_numpy(), 40, seed=1))
    assert pd.Series([labels[i] for i in held]).value_counts().to_dict() == {2: 16, 0: 16, 1: 8}
    values = script.raw_label(data_args.label_mapping, names)
    assert values == ["1", "3", "4"]  # label_mapping keys as the parser normalises them; the csv reads back as 1, 3, 4
    columns = {text: text, pair: pair, "labels": "Rating"}
    out = script.write_rows(tmp_path / "sel.csv", train, held, columns, values)
    written = pd.read_csv(out)
    assert list(written.columns) == ["Review Text", "Title", "Rating"]
    assert not set(written["Review Text"]) & reported
    original = dict(zip(frame["Review Text"], frame["Rating"], strict=True))
    bucket = {1: 1, 2: 1, 3: 3, 4: 4, 5: 4}
    assert all(bucket[original[t]] == r for t, r in zip(written["Review Text"], written["Rating"], strict=True))


def test_calibration_bound_finds_the_offsets_that_undo_a_biased_class():
    import numpy as np

    script = load_script("calibration_bound")
    names = ["bad", "neutral", "good"]
    labels = np.array([0] * 10 + [1] * 10 + [2] * 20)
    logits = np.eye(3)[labels] * 2.0
    logits[labels == 1, 2] += 3.0  # every neutral row leans to `good` by 1 logit more than its own class
    as_saved = script.scores(logits, labels, np.zeros(3), names)
    assert as_saved["recall_neutral"] == 0.0 and as_saved["accuracy"] == 0.75
    best = script.search(logits, labels, names, np.arange(-3, 3.01, 0.5), {"recall_good": 1.0})
    assert best["unconstrained"]["f1_macro"] == 1.0  # neutral up by 1 (a tie goes to it) to under 2 fixes every row
    assert 1.0 <= best["unconstrained"]["offsets"][1] - best["unconstrained"]["offsets"][2] < 2.0
    assert best["constrained"]["recall_good"] == 1.0
    assert script.search(logits, labels, names, np.array([0.0]), {"recall_neutral": 0.5})["constrained"] is None


def test_mean_pooling_base_feeds_the_head_the_mean_and_its_pattern_freezes_only_the_pooling_projections(
    tiny_bert_dir, tmp_path
):
    """The script's model reads the masked mean (through the pooler at scale·identity), reloads as a plain classifier,
    and the printed pattern matches exactly the new block's projections, not its LayerNorms or any other block."""
    import math
    import re

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_transfer.train.few_shot_head import mean_pool

    script = load_script("mean_pooling_base")
    assert script.main(["--model", str(tiny_bert_dir), "--output_dir", str(tmp_path / "m"), "--num_labels", "3"]) == 0
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert model.config.num_hidden_layers == 3 and model.num_labels == 3
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    batch = dict(
        tokenizer(["short", "a much longer row with padding in the other one"], padding=True, return_tensors="pt")
    )
    captured = []
    model.classifier.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
    with torch.no_grad():
        model(**batch)
        hidden = model.base_model(**batch, output_hidden_states=True).hidden_states[2]  # the body's last block
    mean = torch.nn.functional.layer_norm(mean_pool(hidden, batch["attention_mask"]), (32,))
    assert torch.allclose(captured[0], torch.tanh(0.1 * mean), atol=2e-3)
    pattern = re.compile(script.freeze_pattern(2))
    frozen = {name for name, _ in model.named_parameters() if pattern.search(name)}
    assert frozen and all(".layer.2." in n and "LayerNorm" not in n for n in frozen)
    assert {n.split(".layer.2.")[1].rsplit(".", 1)[0] for n in frozen} == {
        "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
        "intermediate.dense", "output.dense",
    }  # fmt: skip
    assert not math.isnan(captured[0].sum().item())


def test_average_checkpoints_writes_the_mean_of_the_last_checkpoints_as_a_loadable_model(
    tiny_bert_dir, tmp_path, capsys
):
    """The averaged folder holds the element-wise mean of the chosen checkpoints' float weights (integer buffers kept),
    loads as a plain classifier with the run's labels, and names what it averaged; mismatches are refused."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    script = load_script("average_checkpoints")
    run = tmp_path / "run"
    labels = {"id2label": {0: "neg", 1: "pos"}, "label2id": {"neg": 0, "pos": 1}}
    models = []
    for step in (5, 10, 15):
        torch.manual_seed(step)
        model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, **labels)
        model.save_pretrained(run / f"checkpoint-{step}")
        AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(run / f"checkpoint-{step}")
        models.append(model.state_dict())
    (run / "hf_transfer_config.yaml").write_text("max_seq_length: 64\n")
    assert [p.name for p in script.run_checkpoints(run)] == ["checkpoint-5", "checkpoint-10", "checkpoint-15"]

    assert script.main(["--run", str(run), "--last", "2", "--output_dir", str(tmp_path / "avg")]) == 0
    averaged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "avg")
    assert averaged.config.id2label == labels["id2label"]
    for name, value in averaged.state_dict().items():
        expected = (models[1][name].double() + models[2][name].double()) / 2
        assert torch.allclose(value.double(), expected, atol=1e-6), name
    assert not torch.equal(models[1]["classifier.weight"], models[2]["classifier.weight"])
    assert json.loads((tmp_path / "avg" / "averaged_from.json").read_text())["checkpoints"] == [
        "checkpoint-10",
        "checkpoint-15",
    ]
    assert (tmp_path / "avg" / "hf_transfer_config.yaml").read_text() == "max_seq_length: 64\n"
    assert (tmp_path / "avg" / "tokenizer.json").is_file() and not (tmp_path / "avg" / "trainer_state.json").exists()

    with pytest.raises(ValueError, match="different tensors"):
        script.average_state_dicts([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])
    with pytest.raises(ValueError, match="integer tensor"):
        script.average_state_dicts([{"a": torch.zeros(2, dtype=torch.long)}, {"a": torch.ones(2, dtype=torch.long)}])
    with pytest.raises(SystemExit) as stopped:  # argparse's error: exit status 2, its message on stderr
        script.main(["--run", str(run), "--last", "4", "--output_dir", str(tmp_path / "x")])
    assert stopped.value.code == 2 and "--last 4:" in capsys.readouterr().err
