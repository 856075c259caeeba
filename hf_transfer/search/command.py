"""`hf-transfer search`: an Optuna study whose every trial is one run of our own `train` (or `distill`) entry point,
on a config parsed exactly as `hf-transfer train --config` parses it.

Why Optuna directly rather than `Trainer.hyperparameter_search`: that API rebuilds only the model (`model_init`) and
sets `TrainingArguments` attributes on one `Trainer`, while a trial of ours may change what the run is built from:
the freeze plan (with the optimizer's layer-wise groups and the frozen-feature cache), the PEFT adapter, or the
distillation loss and its teacher-logit cache. Running the command per trial honours all of them, and the trial's
folder is an ordinary run folder (model, results, card)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import torch

from hf_transfer.adapters.plan import LORA_LEARNING_RATE, check_adapter_args, takes_lora_learning_rate
from hf_transfer.core import memory
from hf_transfer.core.folders import RUN_RECORD_FILE
from hf_transfer.core.parsing import CommandParser
from hf_transfer.core.recipe_overrides import note_origins, settle_recipe_fields
from hf_transfer.core.reuse import reused_across_runs
from hf_transfer.core.runtime import launched_world_size, progress_bar, raise_if_signalled, signalled
from hf_transfer.core.tasks import MULTI_LABEL
from hf_transfer.core.yaml_config import expand_home
from hf_transfer.distill.command import DISTILL_ARGUMENTS, run_distill
from hf_transfer.distill.plan import preflight as distill_preflight
from hf_transfer.errors import ConfigError, HfTransferError, TrainingDivergedError, one_line
from hf_transfer.search import report
from hf_transfer.search import space as spaces
from hf_transfer.search.arguments import MULTI_LABEL_METRICS, SINGLE_LABEL_METRICS, SearchArguments
from hf_transfer.search.idle_fields import check_no_idle_field
from hf_transfer.search.space import (
    Param,
    check_carved_validation,
    check_fields,
    config_value,
    default_space,
    own_value,
    parse_space,
    route_of,
)
from hf_transfer.search.study import (
    STUDY_FILE,
    TRIALS_FOLDER,
    PruningCallback,
    best_trial,
    check_output_dir,
    counted,
    drop_weights_but_best,
    open_study,
    trial_folder,
)
from hf_transfer.train.command import TRAIN_ARGUMENTS, run_train
from hf_transfer.train.feature_cache import trunk_depth
from hf_transfer.train.few_shot_choice import decide_few_shot
from hf_transfer.train.field_checks import schedule_takes_warmup
from hf_transfer.train.preflight import preflight as train_preflight
from hf_transfer.train.trainer import freeze_plan_from_arguments

logger = logging.getLogger(__name__)

SEARCH_FOLDER = "search"
_FAILURES_IN_A_ROW = 3
_TRIAL_FAILURES = (HfTransferError, TrainingDivergedError, torch.OutOfMemoryError)  # fail the trial, not the study


def run_search(search_args: SearchArguments) -> dict:
    s = search_args
    if launched_world_size() > 1:
        raise ConfigError(
            f"hf-transfer search drives its study from one process, but {launched_world_size()} were launched; run "
            "it as one process (`hf-transfer search ...` or `accelerate launch --num_processes 1 -m hf_transfer "
            "search ...`)."
        )
    try:
        import optuna
    except ImportError:
        raise ConfigError("hf-transfer search needs Optuna: pip install 'hf-transfer-learning[search]'.") from None

    verbosity = optuna.logging.get_verbosity()  # the study sets Optuna's to errors: put back for the process after
    try:
        with reused_across_runs():  # the trials' data, prepared and tokenized once (core/reuse.py)
            return _search(s, optuna)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _search(s: SearchArguments, optuna) -> dict:
    setup = _prepare(s)
    root, params, metric = setup["root"], setup["params"], setup["metric"]
    identity = {"metric": metric, "direction": s.direction, "space": {p.name: p.describe() for p in params},
                "config": {k: v for k, v in setup["base"].items() if k != "output_dir"}}  # fmt: skip
    study = open_study(root / SEARCH_FOLDER, s.study_name, identity, seed=setup["seed"], n_trials=s.n_trials,
                       prune_after_trials=s.prune_after_trials)  # fmt: skip
    if s.start_from_config and not study.trials:
        parse = setup["parser"].parse_config
        own = {
            p.name: own_value(p, setup["objects"], lambda c, n=p.name: parse({**setup["base"], n: c})) for p in params
        }
        if "learning_rate" in own and takes_lora_learning_rate(setup["objects"][-2], setup["objects"][-1]):
            own["learning_rate"] = LORA_LEARNING_RATE  # what `train` runs a LoRA config without one at, not 5e-5
        start = {p.name: own[p.name] for p in params if p.contains(own[p.name])}
        if start:  # a field whose own value lies outside the space is drawn, and the trials table says so
            drawn = [p.name for p in params if p.name not in start]
            study.enqueue_trial(start, user_attrs={"from_config": True, "drawn": drawn})
    started = time.perf_counter()
    stopped = _optimize(study, s, setup, optuna)
    return _finish(study, s, setup, stopped, time.perf_counter() - started)


def _prepare(s: SearchArguments) -> dict:
    """Every check that needs no weights: the trials' config, the data (through the route's own pre-flight), the
    metric against the problem type, and each end of each range parsed as a trial would be."""
    base = {k: expand_home(k, v) for k, v in s.trial_config.items()}  # `output_dir: ~/runs` is the home's
    if not base.get("output_dir"):
        raise ConfigError(
            "search needs output_dir: the study, the trials, trials.csv and best_config.yaml are written there."
        )
    check_output_dir(Path(base["output_dir"]), Path(base["output_dir"]) / SEARCH_FOLDER, s.study_name)
    distill = base.get("teacher_model_name_or_path") is not None
    command, arguments = ("distill", DISTILL_ARGUMENTS) if distill else ("train", TRAIN_ARGUMENTS)
    parser = CommandParser(arguments, command)
    base = _trial_defaults(base, s, distill)
    objects = parser.parse_config(base, getattr(s, "other_written", None))
    for name in getattr(s, "other_written", {}):  # a text field keeps a number's text (`run_name: 1e3` is "1e3")
        value = config_value(objects, name)
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            base[name] = value
    training, adapter = objects[-1], objects[-2]
    # The trials' flags, as the route's own command line would give them (`--do_train false` is refused there).
    object.__setattr__(training, "flag_fields", frozenset(getattr(s, "other_flags", ())) & set(parser.hints))
    # A recipe's hub ids and data files, settled once as `train` and `distill` settle them, into every trial's config.
    for args in objects[:2]:
        note_origins(args, getattr(s, "other_flags", ()), getattr(s, "other_variables", None) or {})
    described = settle_recipe_fields("search", objects[0], objects[1])
    for name in ("base_model_hub_id", "dataset_hub_id", "train_file", "validation_file", "test_file"):
        if base.get(name) is not None and config_value(objects, name) is None:
            base[name] = None
    if s.search_space is not None:  # the fields and every value a trial config takes: no data needed
        for p in check_fields(parse_space(s.search_space), parser.hints, command):
            for value in p.bounds_to_check():
                _check_trial_value(parser, base, p, value)
    few_shot = None
    if distill:
        plan = distill_preflight(*objects[:3], training)
        layout, problem_type = plan.freeze_plan.layout, plan.prepared.problem_type
    else:
        plan = train_preflight(objects[0], objects[1], training)
        layout, problem_type = plan.freeze_plan.layout, plan.prepared.problem_type
        few_shot = decide_few_shot(plan, objects[0], objects[2], training, objects[1].max_train_samples)
        base = _pin_few_shot(base, few_shot, training.few_shot_max_rows_per_class)
    allowed = MULTI_LABEL_METRICS if problem_type == MULTI_LABEL else SINGLE_LABEL_METRICS
    metric = s.metric or allowed[0]
    if metric not in (*allowed, "loss"):
        kind = "multi-label" if problem_type == MULTI_LABEL else "single-label"
        raise ConfigError(
            f"metric {metric!r} is not computed for {kind} data; use one of {', '.join(allowed)} or loss."
        )
    t = training
    freezes = any((t.freeze_embeddings, t.freeze_layers, t.freeze_patterns, t.train_head_only, t.gradual_unfreezing))
    route = route_of(distill, adapter.enabled, freezes or t.cache_frozen_features)
    if few_shot is not None and few_shot.on:
        route = "few_shot"
        if plan.prepared.summary.get("validation_carved_from_train"):  # the route then trains on every row
            raise ConfigError(
                f"the trials take the few-shot route ({few_shot.reason}), which keeps no validation data when no "
                f"validation_file is given (every labelled row trains), so no trial would have a validation {metric} "
                "to be judged by; give validation_file, or set few_shot: false to search the ordinary fine-tune."
            )
    space = s.search_space or default_space(
        route, num_layers=layout.depth, peft_method=adapter.peft_method, train_head_only=training.train_head_only
    )
    if s.search_space is None:  # max_steps overrides the epochs (the route's too); a field given as a flag is fixed
        cold = frozenset() if schedule_takes_warmup(training.lr_scheduler_type) else frozenset({"warmup_steps"})
        space = spaces.without_fixed_fields(space, training.flag_fields | cold, training.max_steps > 0)
    params = check_fields(parse_space(space), parser.hints, command)
    check_carved_validation(params, plan.prepared.summary.get("validation_carved_from_train"))
    spaces.check_loss_comparable(metric, params)
    check_no_idle_field({p.name for p in params}, adapter, training, few_shot, objects[2] if distill else None)
    # The student's layout for distillation, unless a searched field changes it (checked per value below).
    model_type = getattr(plan.student_config if distill else plan.config, "model_type", None)
    moved = distill and {"student_layers", "model_name_or_path"} & {p.name for p in params}
    checks = None if moved else _train_checks(layout, model_type)
    for p in params:
        for value in p.bounds_to_check():
            _check_trial_value(parser, base, p, value, checks)
    _check_data_values(params, parser, base, distill)
    for line in described:  # once the input has passed every check: a refusal stays one line
        logger.warning(line)
    return {"root": Path(base["output_dir"]), "base": base, "parser": parser, "objects": objects, "params": params,
            "metric": metric, "route": route, "command": command, "seed": training.seed,
            "entry": run_distill if distill else run_train}  # fmt: skip


def _pin_few_shot(base: dict, decision, threshold: float) -> dict:
    """`few_shot: auto` on data small enough for the few-shot route is decided once, for every trial: decided per
    trial, a trial whose values set an option of the ordinary fine-tune (layerwise_lr_decay below 1, say) left the
    route while the others took it, and the study compared two routes."""
    if decision.requested != "auto" or decision.rows_per_class >= threshold:
        return base
    return {**base, "few_shot": "true" if decision.on else "false"}


def _trial_defaults(base: dict, s: SearchArguments, distill: bool) -> dict:
    """What the trials need that a train config often leaves unset: an evaluation each epoch (so a bad trial can
    be pruned after its first one), no checkpoints, and for distillation the teacher-logit cache (same loss, and
    one teacher pass shared by every trial). Written into best_config.yaml like every other value."""
    base = dict(base)
    if s.prune and str(base.get("eval_strategy", "no")).lower() == "no":
        base["eval_strategy"] = "epoch"
    if base.get("early_stopping_patience") is None:  # early stopping saves at each evaluation (train/checks.py)
        base.setdefault("save_strategy", "no")
    if distill and not base.get("hidden_loss_weight") and "hidden_loss_weight" not in (s.search_space or {}):
        base.setdefault("cache_teacher_logits", True)
    return base


def _train_checks(layout, model_type: str | None):
    """The checks of `train`'s pre-flight that need only the model's layout: adapter options, the freeze plan, and
    the frozen trunk the feature cache needs."""

    def check(objects: tuple) -> None:
        training = objects[-1]
        check_adapter_args(objects[-2], training)
        plan = freeze_plan_from_arguments(layout, training)
        if training.cache_frozen_features:
            trunk_depth(layout, plan.frozen, model_type)

    return check


def _check_trial_value(parser: CommandParser, base: dict, p: Param, value, checks=None) -> None:
    """A value of the space must make a config that the route's parser accepts, and pass `checks` (for train, the
    checks that need only the model's layout)."""
    try:
        objects = parser.parse_config({**base, p.name: value})
        if checks is not None:
            checks(objects)
    except HfTransferError as err:
        raise ConfigError(f"search_space.{p.name}: the value {value!r} is rejected: {err}") from None


def _check_data_values(params: list[Param], parser: CommandParser, base: dict, distill: bool) -> None:
    """A searched field of the model, the data or the teacher (a column, a data file, max_seq_length, student_layers)
    runs through the route's whole pre-flight for each value, as the base config did: the parser and layout checks
    alone let a value the data rejects fail every trial that drew it, after the study had started."""
    owners = DISTILL_ARGUMENTS[:3] if distill else TRAIN_ARGUMENTS[:2]
    fields = {name for owner in owners for name in owner.__dataclass_fields__}
    for p in (p for p in params if p.name in fields):
        for value in p.bounds_to_check():
            try:
                objects = parser.parse_config({**base, p.name: value})
                if distill:
                    distill_preflight(*objects[:3], objects[-1])
                else:
                    train_preflight(objects[0], objects[1], objects[-1])
            except HfTransferError as err:
                raise ConfigError(f"search_space.{p.name}: the value {value!r} is rejected: {err}") from None


def _optimize(study, s: SearchArguments, setup: dict, optuna) -> str:
    """Run trials until the study holds n_trials counted ones, the timeout passes, or trials keep failing."""
    root, params, metric = setup["root"], setup["params"], setup["metric"]
    names = [p.name for p in params]
    deadline = time.monotonic() + s.timeout if s.timeout else None
    bar = progress_bar(total=s.n_trials, initial=min(counted(study), s.n_trials), desc="search", unit="trial")

    def objective(trial):
        values = {p.name: p.suggest(trial) for p in params}
        folder = trial_folder(root, trial.number)
        shutil.rmtree(folder, ignore_errors=True)  # left by an earlier study of the same output_dir
        config = {**setup["base"], **values, "output_dir": str(folder)}
        trial.set_user_attr("config", json.loads(json.dumps(config, default=str)))
        callback = PruningCallback(trial, f"eval_{metric}", s.prune)
        try:
            summary = setup["entry"](*setup["parser"].parse_config(config), callbacks=[callback])
        except optuna.TrialPruned:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        except (*_TRIAL_FAILURES, KeyboardInterrupt) as err:  # a failed trial, the study going on; or interrupted
            shutil.rmtree(folder, ignore_errors=True)
            # Cut short by a signal, whatever error that became: run again when the search resumes (study.py).
            cut = isinstance(err, KeyboardInterrupt) or signalled()
            trial.set_user_attr(*(("interrupted", True) if cut else ("error", one_line(err, 200))))
            raise_if_signalled()
            raise
        if f"eval_{metric}" not in summary:  # a run that kept no validation data: a failed trial, like any other
            err = ConfigError(f"the trial has no validation {metric} to be judged by; give validation_file.")
            trial.set_user_attr("error", one_line(err, 200))
            shutil.rmtree(folder, ignore_errors=True)
            raise err
        trial.set_user_attr("output_dir", str(folder))
        trial.set_user_attr("caches", _cache_use(folder))
        return float(summary[f"eval_{metric}"])

    def after_trial(study, trial):
        memory.release_device_memory()  # the next trial gets the memory this one held (an OOM's too)
        best = best_trial(study)
        if not s.keep_trial_models:
            drop_weights_but_best(study, best, root, setup["command"])
        _write_outputs(study, setup, names, best)
        if trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
            bar.update(1)
        if best is not None:
            bar.set_postfix_str(f"best {metric} {best.value:.4f} (trial {best.number})")  # `best=0` read as a score
        bar.write(report.summary_line(trial, metric, s.n_trials, best, names, counted(study)))

    if (done := counted(study)) >= s.n_trials:  # a finished study run again: its results are shown, nothing is run
        bar.write(f"the study already holds {done} counted trials (n_trials {s.n_trials}): no trial was run; give a "
                  "larger n_trials to run more.")  # fmt: skip
    failures = 0
    try:
        while counted(study) < s.n_trials:
            try:
                study.optimize(objective, n_trials=1, catch=_TRIAL_FAILURES, callbacks=[after_trial])
                raise_if_signalled()  # a signal whose exception was swallowed stops the search between trials
            except KeyboardInterrupt:  # Optuna has marked the trial failed; trials.csv and the plot say so too
                _write_outputs(study, setup, names, best_trial(study))
                raise
            failed = study.trials[-1].state == optuna.trial.TrialState.FAIL
            failures = failures + 1 if failed else 0
            if failures >= _FAILURES_IN_A_ROW:
                return "failures"
            # Checked between trials, so every run starts one: checked before each, a timeout shorter than the
            # set-up ran none and ended in "no trial of the search completed".
            if deadline is not None and time.monotonic() >= deadline and counted(study) < s.n_trials:
                return "timeout"
    finally:
        bar.close()
    return "n_trials"


def _cache_use(folder: Path) -> str:
    """Whether the trial found the frozen-feature or teacher-logit cache built by an earlier trial (`hit`) or built it,
    from its run record."""
    path = folder / RUN_RECORD_FILE
    record = json.loads(path.read_bytes()) if path.is_file() else {}
    found = []
    if record.get("frozen_features"):
        found.append(f"frozen features {'hit' if record['frozen_features'].get('hit') else 'built'}")
    for info in (record.get("distillation") or {}).get("teacher_logit_cache") or []:
        found.append(f"teacher logits {'hit' if info.get('hit') else 'built'}")
    return "; ".join(found)


def _write_outputs(study, setup: dict, names: list[str], best) -> None:
    folder = setup["root"] / SEARCH_FOLDER
    report.write_trials_csv(study, folder / report.TRIALS_CSV, setup["metric"], names)
    report.plot_trials(study, folder / report.TRIALS_PNG, setup["metric"], names, {p.name: p for p in setup["params"]})
    if best is not None:
        states = [t.state.name for t in study.get_trials(deepcopy=False)]
        counts = (states.count("COMPLETE"), states.count("PRUNED"))  # what the best was chosen among
        best_dir, metric = str(setup["root"] / "best"), setup["metric"]
        report.write_best_config(best, setup["root"] / report.BEST_CONFIG, best_dir, metric, setup["command"], counts)


def _finish(study, s: SearchArguments, setup: dict, stopped: str, seconds: float) -> dict:
    from optuna.trial import TrialState

    root, metric, names = setup["root"], setup["metric"], [p.name for p in setup["params"]]
    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    if best is None:
        errors = [t.user_attrs["error"] for t in trials if t.user_attrs.get("error")]
        tried = sum(t.state.is_finished() for t in trials)  # not the trials still queued
        raise ConfigError(
            f"no trial of the search completed ({tried} tried)"
            + (f"; the last failed with: {errors[-1]}" if errors else "")
        )
    _write_outputs(study, setup, names, best)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    report.say_chosen(root / TRIALS_FOLDER, best.number, count[TrialState.COMPLETE], metric, count[TrialState.PRUNED])
    result = {
        "route": setup["route"],
        "trials": len(trials),
        "completed": count[TrialState.COMPLETE],
        "pruned": count[TrialState.PRUNED],
        "failed": count[TrialState.FAIL],
        "stopped_by": stopped,
        "best_trial": best.number,
        f"best_{metric}": best.value,
        "best_params": ", ".join(f"{n}={report.short(best.params[n])}" for n in names if n in best.params),
        "search_wall_seconds": round(seconds, 1),
        "best_config": str(root / report.BEST_CONFIG),
        "trials_csv": str(root / SEARCH_FOLDER / report.TRIALS_CSV),
        "plot": str(root / SEARCH_FOLDER / report.TRIALS_PNG),
        "study": f"{root / SEARCH_FOLDER / STUDY_FILE} (study {s.study_name!r})",
        "output_dir": str(root),
        "table": report.trials_table(study, metric, names),
    }
    if stopped == "failures":
        result["warning"] = f"stopped after {_FAILURES_IN_A_ROW} failed trials in a row; see trials.csv."
    return result
