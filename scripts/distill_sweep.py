"""Choose the distillation recipe without looking at SST-2 dev: variants of scripts/configs/sst2_distill.yaml trained
on the first ROWS rows of SST-2 train (minus a selection sample) and scored on that fixed selection sample of whole
sentences held out of the same train split, each beside its fair twin (the same student, no distillation, trained for
the same number of optimizer steps). With `--command train` it sweeps fine-tuning recipes the same way (variants of
`--config`, default scripts/configs/sst2.yaml; no teacher, no twins):

    python scripts/distill_sweep.py --command train --rows 8000 --output_dir runs/train-sweep \
        --variant lr5e5=--num_train_epochs,3 --variant lr1e4=--num_train_epochs,3,--learning_rate,1e-4

    python scripts/distill_sweep.py --teacher runs/sst2-minilm --rows 8000 --output_dir runs/distill-sweep \
        --variant base= --variant t5=--temperature,5,--alpha,0.9 --variant aug4=--augment_factor,4 --twins

A variant is NAME=FLAG,VALUE,... (flags of `hf-transfer distill`, added to the config's); `base=` is the config as
shipped, with the unlabelled file it names (`--unlabeled_file,none` for the labelled rows alone). `--twins` also runs,
for each variant, the student with `--alpha 0` (no transfer rows, no hidden loss) for the variant's optimizer steps
(`--max_steps`), with the variant's other training flags; twins with the same flags and steps are run once. Every
run goes to OUTPUT_DIR/sweep.json (finished runs are reused) with its selection accuracy, the teacher's accuracy on
the same rows, the transfer set and the wall time split (augmentation, teacher pass, student training).

SST-2's training rows are the phrases of its sentences' parse trees, so a held-out sentence leaves its own phrases in
the pool and the selection figures reward fitting them; `--drop_selection_spans 3` removes from the pool every row that
is a run of 3 or more words of a selection sentence (8,374 of 65,349 rows), as SST-2 dev is held out of train.

The teacher was trained on all of SST-2 train, so it has seen the selection rows: its accuracy there is above its dev
accuracy, and the selection figures favour students that copy it. Dev stays untouched for the final report.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Flags that make a run a distillation; the fair twin drops them.
KD_FLAGS = {"--alpha", "--temperature", "--augment_factor", "--augment_method", "--augment_p", "--augment_neighbours",
            "--unlabeled_file", "--hidden_loss_weight", "--hidden_loss_pooling", "--hidden_loss_type", "--layer_map",
            "--teacher_bf16", "--teacher_batch_size"}  # fmt: skip


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def twin_flags(flags: list[str], steps: int) -> list[str]:
    """The variant's flags without the distillation ones, plus `--alpha 0 --max_steps steps` and `--unlabeled_file
    none` (the config's own unlabelled rows, if it names any, go too: they need the teacher)."""
    kept = [x for i in range(0, len(flags), 2) if flags[i] not in KD_FLAGS | {"--max_steps"} for x in flags[i : i + 2]]
    return [*kept, "--alpha", "0", "--max_steps", str(steps), "--unlabeled_file", "none"]


def summarise(folder: Path) -> dict:
    """What the sweep keeps from a distill run record: accuracy on the selection rows and where the time went."""
    record = json.loads((folder / "hf_transfer_run.json").read_text())
    d, train = record.get("distillation") or {}, record["train_metrics"]
    transfer = d.get("transfer_set") or {}
    augmentation = transfer.get("augmentation") or {}
    caches = d.get("teacher_logit_cache") or []
    return {
        "accuracy": record["eval_metrics"]["eval_accuracy"],
        "teacher_accuracy": d.get("teacher_eval_accuracy"),
        "optimizer_steps": train["optimizer_steps"],
        "transfer_rows": train["train_samples"],
        "augmented_rows": transfer.get("augmented", 0),
        "augment_seconds": augmentation.get("build_seconds", 0.0),
        "teacher_pass_seconds": sum(c.get("build_seconds") or 0.0 for c in caches),
        "train_seconds": train["train_wall_seconds"],
        "cache_bytes_per_row": [round(c["disk_bytes"] / max(c["rows"], 1), 1) for c in caches] or None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--command", choices=["distill", "train"], default="distill", help="what each variant runs")
    parser.add_argument("--config", help="the config the variants change (default: sst2_distill.yaml / sst2.yaml)")
    parser.add_argument("--teacher", help="the fine-tuned teacher folder (distill)")
    parser.add_argument("--variant", action="append", required=True, help="NAME=--flag,value,... (repeatable)")
    parser.add_argument("--twins", action="store_true", help="also run each variant's fair twin (no KD, same steps)")
    parser.add_argument("--rows", type=int, default=8000, help="training rows: the first ROWS of the pool")
    parser.add_argument("--selection_rows", type=int, default=2000)
    parser.add_argument("--selection_min_words", type=int, default=6)
    parser.add_argument(
        "--drop_selection_spans",
        type=int,
        default=0,
        help="remove from the pool every row that is a run of N+ words of a selection sentence",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--common", default="", help="--flag,value,... added to every run (twins too), e.g. bf16")
    parser.add_argument("--output_dir", default="runs/distill-sweep")
    parser.add_argument("--data_dir", default=os.environ.get("HF_TRANSFER_DATA_DIR", str(REPO.parent / "shared/data")))
    parser.add_argument("--lock", help="a file held (flock) around each run")
    parser.add_argument("--yield_to", help="wait while this file exists before each run")
    args = parser.parse_args(argv)
    if args.command == "distill" and not args.teacher:
        parser.error("--teacher is required with --command distill")
    if args.command == "train" and args.twins:
        parser.error("--twins compares distillation with its no-KD twin; it needs --command distill")
    config = args.config or str(
        REPO / "scripts/configs" / ("sst2_distill.yaml" if args.command == "distill" else "sst2.yaml")
    )
    teacher = ["--teacher_model_name_or_path", args.teacher] if args.command == "distill" else []
    sweep, bench = _script("few_shot_sweep"), _script("benchmark")
    variants = dict(sweep.parse_variant(v) for v in args.variant)
    common = sweep.parse_variant(f"common={args.common}")[1]
    out = Path(args.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    texts, labels, selection = sweep.selection_data(
        bench,
        Path(args.data_dir),
        out,
        "sst2",
        args.selection_rows,
        args.selection_min_words,
        args.drop_selection_spans,
    )
    train_file = bench.write_labelled_csv(out / f"sst2_train_{args.rows}.csv", texts[: args.rows], labels[: args.rows])
    store_path = out / "sweep.json"
    store = json.loads(store_path.read_text()) if store_path.exists() else {}

    def run(name: str, flags: list[str]) -> dict:
        if name in store and store[name].get("flags") == flags:
            return store[name]
        folder = out / name
        command = [sys.executable, "-m", "hf_transfer", args.command, "--config", config, *teacher,
                   "--train_file", str(train_file), "--validation_file", str(selection), "--text_column_name", "text",
                   "--output_dir", str(folder), "--eval_strategy", "no", "--seed", str(args.seed),
                   "--disable_tqdm", "true", "--report_to", "none", "--overwrite_output_dir", "true",
                   *common, *flags]  # fmt: skip
        with sweep.cpu_turn(bench, args.lock, args.yield_to):
            sweep.run(command, out / f"{name}.log")
        store[name] = {"flags": flags, **summarise(folder)}
        store_path.write_text(json.dumps(store, indent=2))
        r = store[name]
        seconds = r["augment_seconds"] + r["teacher_pass_seconds"] + r["train_seconds"]
        teacher_note = f" (teacher {r['teacher_accuracy']:.4f})" if r["teacher_accuracy"] is not None else ""
        print(f"{name}: {r['accuracy']:.4f}{teacher_note}, {r['optimizer_steps']} steps, {seconds:.0f} s", flush=True)
        return r

    rows = []
    for name, flags in variants.items():
        r = run(name, flags)
        twin = None
        if args.twins:
            tflags = twin_flags(flags, r["optimizer_steps"])
            twin = run("twin_" + "_".join(f.lstrip("-") for f in tflags), tflags)
        rows.append((name, r, twin))
    print()
    print(f"{'variant':28s} {'acc':>7s} {'twin':>7s} {'gain':>6s} {'steps':>6s} {'aug s':>6s} {'teach s':>7s} "
          f"{'train s':>7s} {'twin s':>7s}")  # fmt: skip
    for name, r, twin in rows:
        gain = f"{100 * (r['accuracy'] - twin['accuracy']):+.2f}" if twin else "—"
        print(f"{name:28s} {r['accuracy']:7.4f} {twin['accuracy'] if twin else float('nan'):7.4f} {gain:>6s} "
              f"{r['optimizer_steps']:6d} {r['augment_seconds']:6.0f} {r['teacher_pass_seconds']:7.0f} "
              f"{r['train_seconds']:7.0f} {twin['train_seconds'] if twin else float('nan'):7.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
