"""The model card's training tables as (name, value) rows from `CardData`: freeze plan, distillation, adapter, weight
interpolation, recipe extras (class weights, LP-FT, early stopping, calibration), hyperparameters, evaluations."""

from __future__ import annotations

from pathlib import Path

from hf_transfer.core.runtime import effective_batch_size
from hf_transfer.core.tasks import METRIC_NAMES
from hf_transfer.outputs.card_data import CardData
from hf_transfer.outputs.provenance import shown_name


def fmt(value, digits: int = 4):
    return f"{value:.{digits}f}" if isinstance(value, float) else "" if value is None else value


def count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def speed_words(speedup: float) -> str:
    """A student's speed against its teacher's, as a reader says it: "2.00× faster", or "10.6× slower" below 1."""
    return f"{speedup:.2f}× faster" if speedup >= 1 else f"{1 / speedup:.2f}× slower"


def freeze_text(freeze: dict, adapter: bool = False) -> str:
    """What was frozen; for an adapter run, the base model's own weights are (PEFT trains the adapter beside them:
    "nothing frozen" beside 22M parameters never trained read as a contradiction)."""
    parts = ["the base model's weights (the adapter trained beside them)"] if adapter else []
    parts += ["only the task head trained"] * bool(freeze.get("train_head_only"))
    parts += ["embeddings frozen"] * bool(freeze.get("freeze_embeddings"))
    if freeze.get("freeze_layers") not in (None, 0, []):
        parts.append(f"blocks frozen: {freeze['freeze_layers']} (of {freeze.get('depth')})")
        if not any(map(freeze.get, ("freeze_embeddings", "freeze_patterns", "train_head_only", "gradual_unfreezing"))):
            parts.append("embeddings trained")  # below frozen blocks, they train: "4 of 6 frozen" left it a guess
    if freeze.get("freeze_patterns"):
        parts.append(f"parameters matching {freeze['freeze_patterns']} frozen")
    stages, reached = freeze.get("unfreezing_stages"), freeze.get("unfreezing_stages_reached")
    if stages and reached is not None and reached < stages:  # the run, or the checkpoint kept, ended before the last
        rest = "so the rest kept the weights it started with"  # true of a kept checkpoint too: unfrozen after it
        parts.append(f"gradual unfreezing reached {reached} of {stages} stages, {rest}")
    if parts:
        return "; ".join(parts)
    return "nothing for good (see gradual unfreezing)" if freeze.get("gradual_unfreezing") else "nothing frozen"


def _shared_blocks(freeze: dict) -> str:
    """Where blocks are not layers (ALBERT's shared layer group): what a block-wise option did to the layers."""
    layers, depth = freeze.get("num_layers"), freeze.get("depth")
    if not layers or not depth or layers == depth:
        return ""
    return f" ({layers} layers run on {depth} block(s) of weights: each block counts as one, all its layers together)"


def freeze_rows(c: CardData) -> list[tuple[str, str]]:
    f = c.freeze
    if c.merge and not f:  # a merge of a model hf-transfer did not train: how it was trained is unknown
        return []
    trainable, frozen = f.get("trainable_parameters_now", 0), f.get("frozen_parameters_now", 0)
    total = trainable + frozen
    share = f"{trainable:,} of {total:,} ({100 * trainable / total:.1f}%)" if total else "unknown"
    rows = [("frozen", freeze_text(f, bool(c.adapter))), ("trainable parameters at the end", share),
            ("never trained (frozen throughout)", count(f.get("permanently_frozen_parameters", 0)))]  # fmt: skip
    if f.get("gradual_unfreezing"):
        text = f"one more block from the top every {f['gradual_unfreezing']} epoch(s), the embeddings last"
        text += _shared_blocks(f)
        if f.get("unfreezing_stages"):
            text += f"; {f.get('unfreezing_stages_reached')} of its {f['unfreezing_stages']} stages reached"
        if c.unfreezing:
            text += "; trainable parameters by epoch: " + ", ".join(
                f"epoch {fmt(s['epoch'], 2)}: {s['trainable_parameters']:,}" for s in c.unfreezing
            )
        rows.append(("gradual unfreezing", text))
    else:
        rows.append(("gradual unfreezing", "off"))
    gamma = f.get("layerwise_lr_decay", 1.0)
    llrd = "1.0 (off)" if gamma == 1.0 else f"{gamma} (block l from the top gets lr·γ^l){_shared_blocks(f)}"
    rows.append(("layer-wise LR decay γ", llrd))
    return rows


def _kd_formula(multi_label: bool) -> str:
    """The loss `distill.losses.distillation_loss` computes: softmax KL and cross-entropy, or for multi-label each
    label's sigmoid, the teacher's as soft targets, and binary cross-entropy."""
    if multi_label:
        return "α·T²·BCE(σ(student/T), σ(teacher/T)) + (1−α)·BCE, per label"
    return "α·T²·KL(teacher ‖ student) + (1−α)·CE"


def distill_rows(c: CardData) -> tuple[list, list]:
    d = c.distillation
    if not d:
        return [], []
    rows = [
        ("teacher(s)", ", ".join(f"`{shown_name(t)}`" for t in d.get("teachers") or [])),
        ("α (soft-loss weight)", str(d.get("alpha"))),
        ("temperature T", str(d.get("temperature"))),
        ("loss", f"{_kd_formula(c.multi_label)}; terms used: " + ", ".join(d.get("loss_terms") or [])),
    ]
    if d.get("teacher_weights"):
        rows.append(("teacher weights", str(d["teacher_weights"])))
    if d.get("student_layers"):
        rows.append(("student built from teacher blocks", str(d["student_layers"])))
    transfer = d.get("transfer_set") or {}
    if transfer.get("unlabelled") or transfer.get("augmented") or transfer.get("repeats_dropped"):
        augment = transfer.get("augmentation") or {}
        how = f" ({augment['method']}, p={augment['p']}, {augment['factor']} per row)" if augment else ""
        repeats = sum((transfer.get("repeats_dropped") or {}).values())
        dropped = f" ({repeats:,} repeating an earlier input dropped)" if repeats else ""
        rows.append(
            ("transfer set", f"{transfer['labelled']:,} labelled rows, {transfer.get('unlabelled', 0):,} unlabelled "
             f"rows, {transfer.get('augmented', 0):,} augmented rows{how}{dropped}; rows without labels get the "
             "soft loss only")
        )  # fmt: skip
    caches = d.get("teacher_logit_cache") or []
    if caches or "kd" in (d.get("loss_terms") or []):
        rows.append(("teacher logits", "; ".join(map(_cache_text, caches)) or "computed online at every step"))
    if d.get("hidden_loss_weight"):
        pooling = d.get("hidden_loss_pooling") or "tokens"
        kind = "every token" if pooling == "tokens" else f"normalised {pooling} vectors ({d.get('hidden_targets')})"
        through = f", through learned {p['from']}→{p['to']} projections" if (p := d.get("hidden_projections")) else ""
        pairs = (d.get("layer_map") or {}).items()  # its keys are text once read back from JSON: shown as numbers
        map_text = f"map {{{', '.join(f'{int(k) if str(k).isdigit() else k!r}: {v}' for k, v in pairs)}}}{through}"
        rows.append(
            ("hidden-state loss", f"{d.get('hidden_loss_type')} of {kind} × {d['hidden_loss_weight']}, {map_text}")
        )
    comparison = []
    if d.get("teacher_eval_accuracy") is not None and d.get("student_eval_accuracy") is not None:
        retention = d.get("retention_percent")
        kept = f"retention {retention:.1f}%" if retention else ""
        metric = d.get("teacher_eval_metric", "accuracy")
        comparison.append((metric, fmt(d["teacher_eval_accuracy"]), fmt(d["student_eval_accuracy"]), kept))
    if d.get("teacher_parameters"):
        ratio = d["student_parameters"] / d["teacher_parameters"]
        n = len(d.get("teachers") or [])
        name = f"parameters (the {n} teachers together)" if n > 1 else "parameters"
        comparison.append((name, count(d["teacher_parameters"]), count(d["student_parameters"]), f"{ratio:.2f}×"))
    if d.get("teacher_samples_per_second"):
        comparison.append(
            (
                f"samples/s (batch {d.get('speed_batch_size')}, this machine)",
                str(d["teacher_samples_per_second"]),
                str(d["student_samples_per_second"]),
                speed_words(d["speedup"]),
            )
        )
    return rows, comparison


def _cache_text(info: dict) -> str:
    """One teacher's logit cache: reused or built, its rows and its size on disk per row."""
    made = "reused from an earlier run" if info.get("hit") else "built by this run"
    top_k = f", top {info['top_k']} logits (targets: a softmax over them)" if info.get("top_k") else ""
    return f"cached ({made}): {info.get('rows', 0):,} rows, {info.get('bytes_per_row', 0):,.0f} bytes per row{top_k}"


def adapter_rows(c: CardData) -> list[tuple[str, str]]:
    a = c.adapter
    if not a:
        return []
    names = {
        "method": "method",
        "r": "rank r",
        "lora_alpha": "lora_alpha",
        "dropout": "dropout",
        "loraplus_lr_ratio": "LoRA+ ratio (B matrices' LR / learning_rate)",
        "target_modules": "target modules",
        "modules_to_save": "also trained and saved",
        "trainable_percent": "trainable parameters (%)",
    }
    names["lora_alpha"] = a.get("alpha_field") or "lora_alpha"
    rows = [(label, str(a[key])) for key, label in names.items() if a.get(key) not in (None, [], "")]
    settings = ", ".join(f"{k} {v}" for k, v in (a.get("settings") or {}).items())
    rows += [("method settings", settings)] if settings else []
    rows.append(("saved as", "an adapter (load it with PEFT)" if a.get("in_folder") else "merged into the weights"))
    return rows


def merge_rows(c: CardData) -> list[tuple[str, str]]:
    m = c.merge
    if not m:
        return []
    base = f"`{shown_name(c.base_model or m.get('pretrained'))}`"
    rows = [
        ("α", f"{m['alpha']:g}"),
        zero_end(m, base),
        ("α = 1 (fine-tuned)", f"`{Path(str(m['finetuned'])).name}` ({finetuned_kind(m)})"),
        *chain_rows(m),
        ("how α is applied", str(m.get("method"))),
        ("task head", head_text(m)),
        ("interpolated tensors", count(m.get("interpolated_tensors"))),
    ]
    if m.get("saved_dtype"):
        rows.append(("saved weights", str(m["saved_dtype"])))
    if m.get("copied_buffers"):
        rows.append(("integer buffers (from the fine-tuned model)", ", ".join(m["copied_buffers"])))
    if len(m.get("alphas") or []) > 1:
        rows.append(("α grid", ", ".join(f"{a:g}" for a in m["alphas"])))
    rows.append(("α chosen by", str(m.get("chosen_by"))))
    return rows


def finetuned_kind(m: dict) -> str:
    """What the α = 1 end is: a fine-tuned model, a merged adapter, or itself a merge (named with its α and ends)."""
    earlier = m.get("finetuned_merge")
    if earlier:
        ends = f"`{Path(str(earlier['pretrained'])).name}` and `{Path(str(earlier['finetuned'])).name}`"
        return f"itself a merge: α = {earlier['alpha']:g} between {ends}"
    return "a PEFT adapter, merged" if m.get("finetuned_kind") == "adapter" else "a fine-tuned model"


def merge_trained_model(merge: dict | None) -> str | None:
    """The model whose training a merge card goes on to describe, when its α = 1 end is itself a merge."""
    if not (merge or {}).get("finetuned_merge"):
        return None
    while merge.get("finetuned_merge"):
        merge = merge["finetuned_merge"]
    return Path(str(merge["finetuned"])).name


def chain_rows(m: dict) -> list[tuple[str, str]]:
    """A merge of a merge that starts from the same pretrained model, with no head interpolation in either, is one
    interpolation of the body: θ = (1 − α₁α₂)·θ_pretrained + α₁α₂·θ_finetuned. Say so, and towards which model."""
    earlier = m.get("finetuned_merge")
    if not earlier or m.get("head_init") or earlier.get("head_init") or earlier.get("finetuned_merge"):
        return []
    if not same_source(m.get("pretrained"), earlier.get("pretrained")):
        return []
    alpha = m["alpha"] * earlier["alpha"]
    towards = Path(str(earlier["finetuned"])).name
    return [("in effect", f"α = {alpha:g} towards `{towards}` (both merges start from the same pretrained model)")]


def same_source(a, b) -> bool:
    """Two ends name the same model: the same folder, or the same Hub id."""
    if a is None or b is None:
        return False
    first, second = Path(str(a)), Path(str(b))
    if first.is_dir() and second.is_dir():
        return first.resolve() == second.resolve()
    return str(a) == str(b)


def zero_end(m: dict, base: str) -> tuple[str, str]:
    """The α = 0 row: the pretrained body, or a whole classifier (a linear probe) when that model is also the head's
    start."""
    if m.get("head_init") and m.get("head_init") == m.get("pretrained"):
        return "α = 0 (a classifier: its body and head)", f"`{Path(str(m['pretrained'])).name}`"
    return "α = 0 (pretrained body)", base


def head_text(m: dict) -> str:
    head = ", ".join(f"`{name}`" for name in m.get("head_tensors") or []) or "none"
    if m.get("head_init"):
        reordered = m.get("head_init_labels")
        note = f" (its label rows reordered from {', '.join(reordered)})" if reordered else ""
        return f"{head}: (1 − α)·head of `{Path(str(m['head_init'])).name}`{note} + α·fine-tuned head"
    if m.get("unused_head"):
        return f"{head}: the fine-tuned head at every α (the pretrained model's head is not used: {m['unused_head']})"
    return f"{head}: the fine-tuned head at every α (the pretrained model has none)"


def alpha_was_chosen(merge: dict) -> bool:
    """Whether a sweep chose the merge's α on its validation set (else it was given, or the only one swept)."""
    return bool(merge.get("sweep")) and not str(merge.get("chosen_by") or "given").startswith("given")


def sweep_table(c: CardData) -> tuple[str, list[str], list[list[str]]]:
    m = c.merge or {}
    rows = m.get("sweep") or []
    if not rows:
        return "", [], []
    names = [m["validation_set"], *(m.get("extra_sets") or [])]
    validation = m["validation_set"]
    columns = ["α", *[f"{n} (validation)" if n == validation != "validation" else n for n in names]]
    columns += ["mean of extra sets"] if m.get("extra_sets") else []
    metric, extra = m.get("selection_metric") or "accuracy", m.get("extra_sets") or []
    table = []
    for row in rows:
        chosen = " (chosen)" if row["alpha"] == m["alpha"] else ""
        cells = [f"{row['alpha']:g}{chosen}", *[fmt(row[n][metric]) for n in names]]
        cells += [fmt(sum(row[n][metric] for n in extra) / len(extra))] if extra else []
        table.append(cells)
    title = METRIC_NAMES[metric][0].upper() + METRIC_NAMES[metric][1:]
    note = (  # the rule's text has its own parentheses: not wrapped in more
        f"{title} of the interpolated model at each α. α was picked on the {validation} set alone: "
        f"{m.get('chosen_by')}. Its score there is therefore optimistic; the other sets played no part in the choice."
        if alpha_was_chosen(m) else f"{title} of the interpolated model at α = {m['alpha']:g}, {m.get('chosen_by')}."
    )  # fmt: skip
    return note, columns, table


def recipe_rows(c: CardData) -> list[tuple[str, str]]:
    r = c.recipe or {}
    rows = []
    if r.get("class_weights"):
        weights = ", ".join(f"{name}: {w:.3g}" for name, w in r["class_weights"].items())
        what = "class weights (loss Σ wᵢ·ℓᵢ / Σ wᵢ)"
        if c.multi_label:
            what = "weights of each label's positive entries (negatives weigh 1; loss Σ wᵢ·ℓᵢ / Σ wᵢ over entries)"
        rows.append((what, weights))
    if r.get("linear_probe"):
        p = r["linear_probe"]
        kind = next((k for k in ("eval_accuracy", "eval_subset_accuracy") if p.get(k) is not None), "")  # multi-label
        accuracy = f", validation {kind[5:].replace('_', ' ')} after the probe {p[kind]:.4f}" if kind else ""
        then = "no fine-tuning after it (0 steps): the model is the probe" if p.get("fine_tune_steps") == 0 else None
        then = then or "then fine-tuned from it"
        rows.append(
            (
                "LP-FT",
                f"head trained alone for {p['epochs']:g} epoch(s) at lr {p['learning_rate']:g}{accuracy}, {then}; "
                f"the probe model is in `{p['saved_to']}/`",
            )  # fmt: skip
        )
    if r.get("early_stopping"):
        e = r["early_stopping"]
        how = "stopped early" if e["stopped_early"] else "ran to the end"
        # Runs recorded before `best_model` was: the checkpoint kept is named here.
        kept = "" if r.get("best_model") else f"; kept {e['best_checkpoint']} ({e['metric']} {fmt(e['best_metric'])})"
        text = f"patience {e['patience']} on {e['metric']}: {how} after {e['epochs_trained']:g} epoch(s){kept}"
        rows.append(("early stopping", text))
    if r.get("best_model"):
        b = r["best_model"]
        epoch = f"epoch {b['epoch']:g}, " if b.get("epoch") is not None else ""
        order = "higher" if b.get("greater_is_better") else "lower"
        whose = "the last step's" if b["step"] == b["last_step"] else "this checkpoint's, not the last step's"
        u = b.get("best_evaluation_unsaved")
        missed = f"; the best evaluation, {fmt(u['value'])} at step {u['step']}, had no checkpoint" if u else ""
        rows.append(("best checkpoint kept (load_best_model_at_end)",
                     f"`{b['checkpoint']}` ({epoch}step {b['step']} of {b['last_step']}; {b['metric']} "
                     f"{fmt(b['value'])}, {order} is better{missed}): the model trained is {whose}"))  # fmt: skip
    if r.get("calibration"):
        k = r["calibration"]
        offsets = ", ".join(f"{name}: {v:+.3f}" for name, v in k["offsets"].items())
        if k["kind"] == "per-label thresholds":  # the offset is added to the logit: the threshold is its negation
            offsets = ", ".join(f"{name}: trained logit > {-v:.3f}" for name, v in k["offsets"].items())
            offsets += " (the saved model's own logits need no threshold but 0)"
        before = (k.get("validation_before") or {}).get("f1_macro")
        # Card data saved before `validation_after` was: a training run's own metrics are those after it.
        after = (k.get("validation_after") or {}).get("f1_macro", None if c.merge else c.metrics.get("f1_macro"))
        moved = ""
        if before is not None and after is not None:
            moved = f"; validation macro-F1 {fmt(before)} before, {fmt(after)} after"
        rows.append(
            (
                "decision calibration",
                f"{k['kind']} maximising macro-F1 on {k['calibration_rows']:,} calibration rows "
                f"carved from train, folded into `{k['folded_into']}`: {offsets}{moved}",
            )  # fmt: skip
        )
    return rows


def scored_in_text(c: CardData) -> str:
    """How a mixed-precision run's scores were measured, after its precision; nothing for an fp32 run (or one recorded
    before the record said it)."""
    if not c.metrics_precision or c.metrics_precision == c.precision:
        return ""
    # A merge's scores, and an export's own (or none), are not the training run's saved model's: nothing said of them.
    if c.merge or (c.export and (c.export.get("validation_report") or not c.metrics)):
        return ""
    return f" (the saved model's scores measured in {c.metrics_precision}, as its weights load)"


def hyper_rows(c: CardData) -> list[tuple[str, str]]:
    h = c.hyperparameters
    if c.merge and not h:
        return []
    rows = [(k, str(v)) for k, v in h.items()]
    if "per_device_train_batch_size" in h:
        effective = effective_batch_size(
            h["per_device_train_batch_size"], h.get("gradient_accumulation_steps", 1), c.world_size
        )
        rows.append(("effective batch size", str(effective)))
    rows += [("mixed precision", c.precision + scored_in_text(c)), ("processes", str(c.world_size))]
    resumed = (c.recipe or {}).get("resumed_from")
    if resumed:
        step = f" (step {resumed['step']})" if resumed.get("step") is not None else ""
        steps = resumed.get("train_loss_steps")
        loss = f"; mean train loss over steps {steps[0]} to {steps[1]}" if steps else ""
        loss += " only (no loss was logged at the resume)" if steps and steps[0] > 1 else ""
        launch = f" launched as {resumed['launched_as']}" if resumed.get("launched_as") else ""  # not as this run
        changed = ", ".join(f"{k} {a} (now {b})" for k, (a, b) in (resumed.get("schedule_changed") or {}).items())
        loss += f"; they ran on a learning-rate schedule with {changed}; the rest on this run's" if changed else ""
        text = f"`{resumed['checkpoint']}`{step}: the steps before it ran in another process{launch}{loss}"
        rows.append(("resumed from", text))
    started = (c.recipe or {}).get("started_from_checkpoint")
    if started:
        step = f" (step {started['step']})" if started.get("step") is not None else ""
        rows.append(("started from", f"the weights of the Trainer checkpoint `{started['checkpoint']}`{step}, afresh"))
    return rows


def epoch_table(c: CardData) -> tuple[list[str], list[list]]:
    keys = ["epoch", "step", "train_loss", "eval_loss"]
    keys += [k for k in ("accuracy", "subset_accuracy", "f1_macro", "f1_micro") if any(k in row for row in c.epochs)]
    headers = [k.replace("_", " ") for k in keys]
    return headers, [[fmt(row.get(k), 2 if k == "epoch" else 4) for k in keys] for row in c.epochs]
