"""The Optuna side of `hf-transfer search`: the study in an SQLite file (created, or resumed with its finished trials
kept and an interrupted one queued again), and the callback that reports each evaluation to the trial and prunes it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

from hf_transfer.core.folders import check_not_under_a_file, write_text_atomic
from hf_transfer.errors import ConfigError

TRIALS_FOLDER = "trials"


def trial_folder(root: Path, number: int) -> Path:
    """Where trial `number` of the search in `root` (its output_dir) writes its run. Removing a trial's files goes by
    this, never by a path read from study.db: a copied or edited study named folders elsewhere."""
    return Path(root) / TRIALS_FOLDER / f"trial-{int(number):03d}"


STUDY_FILE = "study.db"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_WEIGHTS_REMOVED = "> **Weights removed.**"
# What a study was started with; a rerun that differs would mix incomparable trials into one study.
_IDENTITY = ("metric", "direction", "space", "config")


class PruningCallback(TrainerCallback):
    """Reports the validation metric of every evaluation during training to the Optuna trial (at step 1, 2, … so
    that trials of different batch sizes compare evaluation by evaluation) and stops a trial the pruner rejects."""

    def __init__(self, trial, metric_key: str, prune: bool):
        self.trial, self.metric_key, self.prune = trial, metric_key, prune
        self.evaluations = 0

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        import optuna

        if not metrics or self.metric_key not in metrics:
            return
        self.evaluations += 1
        value = float(metrics[self.metric_key])
        self.trial.report(value, step=self.evaluations)
        if self.prune and self.trial.should_prune():
            epoch = round(state.epoch or 0.0, 2)
            self.trial.set_user_attr("pruned_at", {"evaluation": self.evaluations, "epoch": epoch})
            raise optuna.TrialPruned(
                f"pruned at evaluation {self.evaluations} (epoch {epoch}): {self.metric_key} {value:.4f}"
            )


def check_output_dir(root: Path, folder: Path, name: str) -> None:
    """Before any data is read: output_dir is new, empty, or holds the study `name` (in `folder/study.db`). The
    trials' folders, trials.csv and best_config.yaml are not kept per study, so a second study, or a search into a
    run's folder, would overwrite or mix with what is there (and the first study's best model would be deleted)."""
    import optuna

    check_not_under_a_file(str(root), "search")
    if not root.is_dir() or not any(root.iterdir()):
        return
    db = folder / STUDY_FILE
    if not db.is_file():
        held = sorted(p.name for p in root.iterdir())
        raise ConfigError(
            f"output_dir {str(root)!r} is not empty and holds no search (it holds {held[:6]}); a search writes its "
            "trials, trials.csv and best_config.yaml there: choose a new output_dir, or an earlier search's to "
            "resume it."
        )
    try:
        names = optuna.get_all_study_names(storage=f"sqlite:///{db.resolve()}")
    except Exception as err:  # not an SQLite file, or not Optuna's
        raise ConfigError(f"{str(db)!r} is no readable Optuna study ({type(err).__name__}); move it away.") from None
    others = [other for other in names if other != name]
    if others:
        raise ConfigError(
            f"output_dir {str(root)!r} holds the study {others[0]!r}; a study named {name!r} would overwrite its "
            f"trials and best_config.yaml: rerun with --study_name {others[0]} to resume it, or choose another "
            "output_dir."
        )


def open_study(folder: Path, name: str, identity: dict, *, seed: int, n_trials: int, prune_after_trials: int):
    """The study `name` in `folder/study.db`: new, or the one an earlier run left (refused when it was started with
    another metric, direction, space or config). Trials a killed run left RUNNING are marked failed and queued
    again, as are trials a Ctrl-C stopped."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial says the same, once
    folder.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}")
    identity = json.loads(json.dumps(identity, default=str))
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=identity["direction"],
        pruner=optuna.pruners.MedianPruner(n_startup_trials=prune_after_trials, n_warmup_steps=0),
        load_if_exists=True,
    )
    stored = {k: study.user_attrs.get(k) for k in _IDENTITY}
    if any(v is not None for v in stored.values()) or study.trials:
        changed = [k for k in _IDENTITY if stored[k] is not None and stored[k] != identity[k]]
        if changed or study.direction.name.lower() != identity["direction"]:
            what = ", ".join(changed) or "direction"
            raise ConfigError(
                f"study {name!r} in {folder / STUDY_FILE} was started with another {what}; rerun with the same "
                "config to resume it, or give a new output_dir for a new study."
            )
    for key in _IDENTITY:
        study.set_user_attr(key, identity[key])
    _requeue_interrupted(study, storage, TrialState, folder.parent)
    # Seeded by the trials already there, so a resumed study does not draw the first run's random trials again.
    startup = 1 + max(1, min(10, n_trials // 3))  # the config's own trial counts as one of TPE's startup trials
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=startup)
    return study


def _requeue_interrupted(study, storage, TrialState, root: Path) -> None:
    requeued = set(study.user_attrs.get("requeued", []))
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False):
        killed = trial.state == TrialState.RUNNING
        stopped = trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")
        if not (killed or stopped) or trial.number in requeued:
            continue
        if killed:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            # Its folder, cut off mid-run (weights, no results), would stay for good: the rerun has a new number.
            shutil.rmtree(trial_folder(root, trial.number), ignore_errors=True)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        requeued.add(trial.number)
    study.set_user_attr("requeued", sorted(requeued))


def counted(study) -> int:
    """Trials that count towards n_trials: completed and pruned ones."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def best_trial(study):
    """The best completed trial, or None."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return study.best_trial


def drop_weights_but_best(study, best, root: Path, command: str = "train") -> None:
    """Model weights of finished trials other than the best go (their results, config and card stay, and the card
    says so: its quick start loaded a folder that no longer holds a model), in the trial folders under `root`."""
    for trial in study.get_trials(deepcopy=False):
        folder = trial_folder(root, trial.number)
        if (best is not None and trial.number == best.number) or not folder.is_dir():
            continue
        for path in list(Path(folder).rglob("*")):
            if path.is_dir() and path.name.startswith("checkpoint-"):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file() and path.suffix in _WEIGHT_SUFFIXES:
                path.unlink()
        _say_weights_removed(Path(folder) / "README.md", command)


def _say_weights_removed(card: Path, command: str) -> None:
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if not text or _WEIGHTS_REMOVED in text:
        return
    note = (
        f"{_WEIGHTS_REMOVED} `hf-transfer search` kept this trial's results, configuration and card, and removed "
        "its weights: it was not the study's best trial (`--keep_trial_models true` keeps them). To train it again: "
        f"`hf-transfer {command} --config hf_transfer_config.yaml --output_dir NEW_DIR`.\n\n"
    )
    header = re.match(r"---\n.*?\n---\n", text, re.DOTALL)  # the YAML header, when the card has one
    end = header.end() if header else 0
    write_text_atomic(card, text[:end] + ("\n" if header else "") + note + text[end:].lstrip("\n"))  # a kill: whole
