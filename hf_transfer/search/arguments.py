"""The arguments of `hf-transfer search`. Only the search's own fields live here: every other field of the config
(the train or distill config the trials start from) is collected in `trial_config` and parsed once per trial exactly
as `hf-transfer train` (or `distill`) would parse it."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from hf_transfer.distill.command import DISTILL_ARGUMENTS
from hf_transfer.errors import ConfigError
from hf_transfer.search.space import parse_space
from hf_transfer.train.command import TRAIN_ARGUMENTS

# Validation metrics a trial can be judged by (without the `eval_` prefix Trainer gives them).
SINGLE_LABEL_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
MULTI_LABEL_METRICS = ("f1_macro", "f1_micro", "subset_accuracy")
METRICS = (*dict.fromkeys(SINGLE_LABEL_METRICS + MULTI_LABEL_METRICS), "loss")
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")


@dataclass
class SearchArguments:
    """`hf-transfer search`: an Optuna study over a train (or distill) config. Every field of the config that is not
    one of these is a field of `hf-transfer train` (or of `distill`, when the config names a teacher)."""

    other_fields: ClassVar[str] = "trial_config"  # see core.parsing.CommandParser

    @staticmethod
    def other_switches() -> frozenset[str]:
        """The true/false fields of `train` and `distill`: a bare `--freeze_embeddings` (or `--no_X`) sets one, as
        it does for `train`."""
        return frozenset(
            f.name
            for dtype in {*TRAIN_ARGUMENTS, *DISTILL_ARGUMENTS}
            for f in dataclasses.fields(dtype)
            if typing.get_type_hints(dtype)[f.name] in (bool, bool | None)
        )

    n_trials: int = field(
        default=10,
        metadata={
            "help": "Trials the study holds when the search ends (completed and pruned ones; those of an interrupted "
            "earlier run of the same study count), unless timeout stops it first."
        },
    )
    timeout: float | None = field(
        default=None,
        metadata={
            "help": "Start no new trial once this many seconds have passed since the search began (the running one "
            "finishes; the first trial of a run always starts)."
        },
    )
    metric: str | None = field(
        default=None,
        metadata={
            "help": "Validation metric the trials are judged by: accuracy, f1_macro, precision_macro, recall_macro "
            "(single-label); f1_macro, f1_micro, subset_accuracy (multi-label); or loss. Default: accuracy for "
            "single-label data, f1_macro for multi-label data."
        },
    )
    direction: Literal["maximize", "minimize"] | None = field(
        default=None,
        metadata={"help": "`maximize` or `minimize` the metric. Default: minimize for loss, else maximize."},
    )
    search_space: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": "The fields to search and their ranges: `{low: L, high: H}` for numbers (`log: true` for a log "
            "scale, `step: S` for a grid), or a list of choices, e.g. `{learning_rate: {low: 1.0e-5, high: 1.0e-4, "
            "log: true}, per_device_train_batch_size: [16, 32]}`. Default: a space for the config's route (full "
            "fine-tune, frozen layers, PEFT adapter, distillation, few-shot route); see docs/search.md."
        },
    )
    study_name: str = field(
        default="hf-transfer-search",
        metadata={
            "help": "Name of the study in output_dir/search/study.db; rerunning with the same name and output_dir "
            "resumes it (finished trials are kept, an interrupted one runs again). An output_dir holds one study."
        },
    )
    prune: bool = field(
        default=True,
        metadata={
            "help": "Stop a trial when its metric at an evaluation is worse than the median of the earlier trials "
            "at the same evaluation (Optuna's MedianPruner). Trials evaluate every epoch unless the config sets "
            "eval_strategy."
        },
    )
    prune_after_trials: int = field(
        default=3, metadata={"help": "Trials that run to the end before any trial may be pruned."}
    )
    start_from_config: bool = field(
        default=True,
        metadata={
            "help": "Make the first trial of a new study the config's own values of the searched fields (those "
            "inside the space), so the search is measured against the recipe it starts from."
        },
    )
    keep_trial_models: bool = field(
        default=False,
        metadata={
            "help": "Keep every trial's model weights. By default only the best trial's are kept; every trial's "
            "results, resolved config and card stay either way."
        },
    )
    # The train (or distill) config of the trials: every config value and flag that is no field of this class.
    trial_config: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.n_trials < 1:
            raise ConfigError(f"n_trials must be >= 1, got {self.n_trials}.")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout must be a number of seconds > 0, got {self.timeout}.")
        if self.metric is not None:
            self.metric = str(self.metric).strip().removeprefix("eval_")
            if self.metric not in METRICS:
                raise ConfigError(
                    f"metric {self.metric!r} is not a validation metric; expected one of {', '.join(METRICS)}."
                )
        if self.metric == "loss" and self.direction == "maximize":
            raise ConfigError("metric loss with direction maximize would look for the worst trial; use minimize.")
        if self.metric != "loss" and self.direction == "minimize":  # every other metric is better when higher
            metric = f"metric {self.metric}" if self.metric else "the default metric (accuracy; multi-label: f1_macro)"
            raise ConfigError(f"{metric} with direction minimize would look for the worst trial; use maximize.")
        if self.direction is None:
            self.direction = "minimize" if self.metric == "loss" else "maximize"
        self.study_name = str(self.study_name).strip()
        if not _STUDY_NAME.match(self.study_name):
            raise ConfigError(f"study_name must be letters, digits, '.', '_', '+' or '-', got {self.study_name!r}.")
        if self.prune_after_trials < 0:
            raise ConfigError(f"prune_after_trials must be >= 0, got {self.prune_after_trials}.")
        if self.search_space is not None:
            parse_space(self.search_space)  # the syntax; the fields are checked against the route's arguments later
