"""What a search leaves beside its study: `search/trials.csv` (a row per trial), `search/trials.png` (the metric per
trial with the best so far, the parameters' importances and the metric against the most important ones) and
`best_config.yaml`, the best trial's config, which `hf-transfer train --config best_config.yaml` reproduces."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml

from hf_transfer.core.folders import CARD_DATA_FILE, RUN_RECORD_FILE, atomic_path, write_text_atomic
from hf_transfer.core.markdown import table_row
from hf_transfer.core.parsing import CHOSEN_BY_SEARCH
from hf_transfer.outputs.card_data import load_card_data
from hf_transfer.outputs.cards import write_model_card
from hf_transfer.outputs.plots import _figure, _save
from hf_transfer.outputs.run_folder import absolute_paths

TRIALS_CSV = "trials.csv"
TRIALS_PNG = "trials.png"
BEST_CONFIG = "best_config.yaml"


def _duration(trial) -> float | None:
    if trial.datetime_start and trial.datetime_complete:
        return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)
    return None


def _last_report(trial) -> float | None:
    """A pruned trial's metric at its last evaluation."""
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def write_trials_csv(study, path: Path, metric: str, names: list[str]) -> None:
    """One row per trial: number, state, the metric, duration, every searched parameter, where it was pruned."""
    fields = ["number", "state", metric, "duration_s", *names, "evaluations", "pruned_at_evaluation", "caches", "note"]
    rows = []
    trials = study.get_trials(deepcopy=False)
    reruns = {t.user_attrs["requeued_from"]: t.number for t in trials if "requeued_from" in t.user_attrs}
    for trial in trials:
        pruned = trial.user_attrs.get("pruned_at") or {}
        note = trial.user_attrs.get("error") or ""
        if trial.user_attrs.get("interrupted") or trial.number in reruns:  # Ctrl-C, or killed and failed on resume
            note = "interrupted" + (f"; run again as trial {reruns[trial.number]}" if trial.number in reruns else "")
        if trial.user_attrs.get("from_config"):
            drawn = trial.user_attrs.get("drawn") or []  # outside the space (or unset): drawn like any trial's
            own = "the config's own values" + (f" ({', '.join(drawn)} drawn: not in the space)" if drawn else "")
            note = own + (f"; {note}" if note else "")
        if "requeued_from" in trial.user_attrs:
            note = f"reruns interrupted trial {trial.user_attrs['requeued_from']}" + (f"; {note}" if note else "")
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                metric: trial.value if trial.value is not None else _last_report(trial),
                "duration_s": _duration(trial),
                **{name: trial.params.get(name) for name in names},
                "evaluations": len(trial.intermediate_values),
                "pruned_at_evaluation": pruned.get("evaluation"),
                "caches": trial.user_attrs.get("caches", ""),
                "note": note,
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def write_best_config(
    trial, path: Path, output_dir: str, metric: str, command: str = "train", counts: tuple[int, int] = (1, 0)
) -> dict:
    """The best trial's config (the user's config with the searched values filled in, exactly what the trial was
    parsed from) with its own output_dir and absolute paths (the file is read from the search's folder); returns
    it. Below it, `chosen_by_search` (no setting: the parser sets it aside) records the choice, {completed, pruned}
    trials being `counts`, and the validation rows it was made on: a model retrained on them says so on its card."""
    config = absolute_paths({**trial.user_attrs["config"], "output_dir": output_dir})
    header = (
        f"# hf-transfer search: trial {trial.number}, the best of the study ({metric} {trial.value:.4f} on the "
        f"validation data).\n# Reproduce it with: hf-transfer {command} --config best_config.yaml\n"
    )
    record = Path(trial.user_attrs.get("output_dir", "")) / RUN_RECORD_FILE
    data = json.loads(record.read_bytes()).get("data") or {} if record.is_file() else {}
    chosen = {"trial": trial.number, "of": counts[0], "pruned": counts[1], "metric": metric,
              "validation_rows_sha256": (data.get("validation") or {}).get("rows_sha256")}  # fmt: skip
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    text += "# How these settings were chosen (not a setting; cards of runs on the same validation rows say so):\n"
    write_text_atomic(path, header + text + yaml.safe_dump({CHOSEN_BY_SEARCH: chosen}, sort_keys=False))
    return config


def importances(study, names: list[str]) -> dict[str, float]:
    """Optuna's fANOVA importance of each parameter, over the completed trials; {} until there are enough of them
    (two completed trials whose parameters differ)."""
    import warnings

    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varied = [n for n in names if len({repr(t.params.get(n)) for t in done if n in t.params}) > 1]
    if len(done) < 2 or not varied:
        return {}
    try:
        with warnings.catch_warnings():  # Optuna 5 defaults to PED-ANOVA, and warns on a handful of trials
            warnings.simplefilter("ignore")
            return get_param_importances(study, params=varied, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # e.g. parameters missing from some trials
        return {}


def plot_trials(study, path: Path, metric: str, names: list[str], params_by_name: dict) -> None:
    """The metric of every trial against its number (pruned ones at their last evaluation) with the best so far,
    the parameters' importances, and the metric against the two most important parameters."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    maximize = study.direction.name.lower() == "maximize"
    fig = _figure(figsize=(12, 8))
    (trial_ax, importance_ax), (left_ax, right_ax) = fig.subplots(2, 2)

    done = [(t.number, t.value) for t in trials if t.state == TrialState.COMPLETE]
    pruned = [(t.number, _last_report(t)) for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    unscored = len(done) + len(pruned)
    done, pruned = _finite(done), _finite(pruned)  # a diverged trial's NaN has no place on the axis
    unscored -= len(done) + len(pruned)
    if done:
        trial_ax.scatter(*zip(*done, strict=True), color="tab:blue", zorder=3, label="completed")
        best, line = None, []
        for number, value in done:
            best = value if best is None or (value > best if maximize else value < best) else best
            line.append((number, best))
        numbers = [n for n, _ in line] + [max(t.number for t in trials)]
        trial_ax.step(numbers, [b for _, b in line] + [line[-1][1]], where="post", color="tab:green",
                      label="best so far")  # fmt: skip
    if pruned:
        trial_ax.scatter(*zip(*pruned, strict=True), color="tab:orange", marker="x", zorder=3,
                         label="pruned (last evaluation)")  # fmt: skip
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    for index, number in enumerate(failed):  # where they fell in the sequence: a tick at the foot of the axis
        trial_ax.axvline(number, ymax=0.05, color="tab:red", linewidth=2, label="failed" if index == 0 else None)
    headline = f"Search: {'maximize' if maximize else 'minimize'} validation {metric}"
    if done:
        number, value = (max if maximize else min)(done, key=lambda pair: pair[1])
        headline += f"; best {value:.4f} (trial {number})"
    fig.suptitle(headline)
    trial_ax.set(xlabel="trial", ylabel=f"validation {metric}",
                 title=f"{len(trials)} trials" + _not_shown(len(failed), unscored))  # fmt: skip
    trial_ax.xaxis.get_major_locator().set_params(integer=True)
    if done or pruned or failed:
        trial_ax.legend()
    if not (done or pruned):
        trial_ax.text(0.5, 0.5, "no trial finished yet", ha="center", va="center", transform=trial_ax.transAxes)

    scores = importances(study, names)
    if scores:
        order = sorted(scores, key=scores.get)
        importance_ax.barh(order, [scores[n] for n in order], color="tab:purple")
        importance_ax.set(xlabel="importance (fANOVA, share of the metric's variance)", title="parameter importance")
    else:
        importance_ax.text(0.5, 0.5, "importances need two completed trials\nwith different parameters",
                           ha="center", va="center", transform=importance_ax.transAxes, color="gray")  # fmt: skip
        importance_ax.set(title="parameter importance")
        importance_ax.set_axis_off()
    top = sorted(scores, key=scores.get, reverse=True) if scores else list(names)
    for ax, name in zip((left_ax, right_ax), [*top[:2], None, None], strict=False):
        if name is None:
            ax.set_axis_off()
            continue
        _metric_against(ax, trials, name, metric, params_by_name.get(name), TrialState)
    _save(fig, path)


def _metric_against(ax, trials, name: str, metric: str, param, TrialState) -> None:
    points = [(t.params[name], t.value) for t in trials if t.state == TrialState.COMPLETE and name in t.params]
    pruned = [(t.params[name], _last_report(t)) for t in trials
              if t.state == TrialState.PRUNED and name in t.params and t.intermediate_values]  # fmt: skip
    points, pruned = _finite(points), _finite(pruned)
    categorical = param is not None and not param.is_range
    if categorical:  # choices at evenly spaced positions, labelled by value; every choice keeps its tick
        labels = [str(c) for c in param.choices]
        points = _spread([(labels.index(str(x)), y) for x, y in points])
        pruned = _spread([(labels.index(str(x)), y) for x, y in pruned])
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    if points:
        ax.scatter(*zip(*points, strict=True), color="tab:blue", label="completed")
    if pruned:
        ax.scatter(*zip(*pruned, strict=True), color="tab:orange", marker="x", label="pruned")
    if param is not None and param.is_range and param.log:
        ax.set_xscale("log")
    ax.set(xlabel=name, ylabel=f"validation {metric}", title=f"{metric} against {name}")
    if points or pruned:
        ax.legend()


def _finite(points: list[tuple]) -> list[tuple]:
    return [(x, y) for x, y in points if y is not None and math.isfinite(y)]


def _not_shown(failed: int, unscored: int) -> str:
    """The trial panel's title note on the trials it cannot place: failed ones (marked at the foot of the axis) and
    those whose score is NaN or inf (a diverged trial, which Optuna's pruner prunes)."""
    notes = [f"{failed} failed (red ticks)"] * bool(failed) + [f"{unscored} with no finite score, not shown"] * bool(
        unscored
    )
    return f" ({'; '.join(notes)})" if notes else ""


def _spread(points: list[tuple]) -> list[tuple]:
    """Trials at one categorical choice side by side around its tick, rather than stacked into one dot."""
    seen: dict = {}
    out = []
    for x, y in points:
        k = seen[x] = seen.get(x, -1) + 1
        out.append((x, y, k))
    count = {x: seen[x] + 1 for x in seen}
    return [(x + (k - (count[x] - 1) / 2) * min(0.08, 0.6 / count[x]), y) for x, y, k in out]


def summary_line(trial, metric: str, total: int, best, names: list[str], done: int | None = None) -> str:
    """The line printed when a trial ends: its state, metric, duration and parameters, and the best so far. `done`:
    the trials that count towards `total` so far (completed and pruned); a failed trial is not one of them, so its
    line gives no position."""
    state = trial.state.name.lower()
    value = trial.value if trial.value is not None else _last_report(trial)
    score = f"{metric} {value:.4f}" if value is not None and math.isfinite(value) else "no score"
    params = ", ".join(f"{n}={short(trial.params[n])}" for n in names if n in trial.params)
    note = f" ({trial.user_attrs['error']})" if trial.user_attrs.get("error") else ""
    best_text = f"; best: trial {best.number}, {best.value:.4f}" if best is not None else ""
    took = _duration(trial)
    # Trials are named by their number everywhere (trials.csv, trials/trial-NNN, "best: trial N"), counted from 0.
    counts = trial.state.name in ("COMPLETE", "PRUNED")
    position = f" ({trial.number + 1 if done is None else done} of {total})" if counts else ""
    return (f"trial {trial.number}{position} {state}{note}: {score}"
            + (f" in {took:.0f}s" if took is not None else "") + f" [{params}]{best_text}")  # fmt: skip


def short(value) -> str:
    """A parameter value for a line of text: floats to 3 significant digits."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def trials_table(study, metric: str, names: list[str]) -> str:
    """The trials as a Markdown table, for the end-of-search summary."""
    header = ["trial", "state", metric, *names]
    lines = [table_row(header), "|" + "---|" * len(header)]
    for trial in study.get_trials(deepcopy=False):
        value = trial.value if trial.value is not None else _last_report(trial)
        cells = [str(trial.number), trial.state.name.lower(), "" if value is None else f"{value:.4f}"]
        cells += [short(trial.params[n]) if n in trial.params else "" for n in names]
        lines.append(table_row(cells))
    return "\n".join(lines) + "\n"


def say_chosen(trials: Path, number: int, completed: int, metric: str, pruned: int = 0) -> None:
    """The best trial's card says it was chosen on its own validation rows: the best of many tries on the same rows
    reads higher than the model scores on new data (`hf-transfer card` keeps the note: it is in the card data). A
    trial that was the best before a resumed study found a better one loses the note."""
    for folder in sorted(trials.glob("trial-*")):
        card_data = load_card_data(folder) if folder.is_dir() else None
        best = folder.name == f"trial-{number:03d}"
        if card_data is None or not (best or "chosen_by_search" in card_data.recipe):
            continue
        card_data.recipe = {k: v for k, v in card_data.recipe.items() if k != "chosen_by_search"}
        if best:
            card_data.recipe["chosen_by_search"] = {
                "trial": number,
                "of": completed,
                "pruned": pruned,
                "metric": metric,
            }
        card_data.save(folder / CARD_DATA_FILE)
        write_model_card(folder, card_data)
