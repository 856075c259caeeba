"""A searched field that the trials' runs would ignore, so that every trial would train the same model: refused
before the study starts."""

from __future__ import annotations

from hf_transfer.adapters.arguments import ADAPTER_ONLY_FIELDS
from hf_transfer.errors import ConfigError
from hf_transfer.train.few_shot_choice import FEW_SHOT_REPLACES
from hf_transfer.train.field_checks import choice_text, schedule_takes_warmup

# A distillation field, the field that switches its term on, and what that field's 0 means: searched while its
# switch is fixed at 0, the field changes nothing (a temperature with no soft loss trained N identical students).
DISTILL_SWITCHES = {
    "temperature": "alpha", "teacher_top_k": "alpha",
    "hidden_loss_type": "hidden_loss_weight", "hidden_loss_pooling": "hidden_loss_weight",
    "layer_map": "hidden_loss_weight",
    "augment_p": "augment_factor", "augment_method": "augment_factor", "augment_neighbours": "augment_factor",
}  # fmt: skip
_OFF = {"alpha": "no soft loss", "hidden_loss_weight": "no hidden-state loss", "augment_factor": "no augmented copies"}


def check_no_idle_field(names: set[str], adapter, training, few_shot, distill=None) -> None:
    """A searched field the trials' run ignores would make every trial train the same model (`distill`: the
    distillation arguments, when the trials distil)."""
    for name in sorted(names & set(DISTILL_SWITCHES)) if distill is not None else ():
        switch = DISTILL_SWITCHES[name]
        if switch not in names and not getattr(distill, switch):
            raise ConfigError(
                f"search_space.{name}: {switch} is 0 ({_OFF[switch]}), so {name} changes nothing and every trial "
                f"would train the same model; set {switch} above 0 in the config, search it too, or leave {name} out."
            )
    idle = sorted(names & set(ADAPTER_ONLY_FIELDS))
    if idle and not adapter.enabled and "peft_method" not in names:
        raise ConfigError(
            f"search_space.{idle[0]}: peft_method is none, so {idle[0]} changes nothing and every trial would train "
            "the same model; set peft_method (e.g. lora) in the config, or leave it out of search_space."
        )
    schedule = choice_text(training.lr_scheduler_type)
    if "warmup_steps" in names and "lr_scheduler_type" not in names and not schedule_takes_warmup(schedule):
        raise ConfigError(
            f"search_space.warmup_steps: lr_scheduler_type {schedule} has no warmup, so every trial would train the "
            "same model; leave warmup_steps out, or use a schedule with one."
        )
    epochs = sorted(names & {"num_train_epochs", "few_shot_body_epochs"})
    if epochs and training.max_steps > 0 and "max_steps" not in names:
        raise ConfigError(
            f"search_space.{epochs[0]}: max_steps is {training.max_steps}, which overrides {epochs[0]}, so "
            f"every trial would train as many steps; leave {epochs[0]} out of search_space, or drop max_steps "
            "from the config (--max_steps -1)."
        )
    replaced = sorted(names & set(FEW_SHOT_REPLACES)) if few_shot is not None and few_shot.on else []
    if replaced:
        raise ConfigError(
            f"search_space.{replaced[0]}: the trials take the few-shot route ({few_shot.reason}), which trains with "
            f"{FEW_SHOT_REPLACES[replaced[0]]} instead of {replaced[0]}, so every trial would train the same model; "
            "search few_shot_* fields (few_shot_learning_rate, few_shot_batch_size, few_shot_body_epochs, "
            "few_shot_head_c), or set few_shot: false to search the ordinary fine-tune."
        )
    _check_few_shot_fields(names, training, few_shot)


def _check_few_shot_fields(names: set[str], training, few_shot) -> None:
    """The route's own fields with every trial off the route (decided once, unless the route or its row limit is
    searched), and `few_shot_temperature` with the cosine pair loss, which has none: N identical trials."""
    own = sorted(n for n in names if n.startswith("few_shot_") and n != "few_shot_max_rows_per_class")
    route_fixed = not names & {"few_shot", "few_shot_max_rows_per_class"}
    if own and route_fixed and (few_shot is None or not few_shot.on):
        why = f"few_shot {few_shot.line()}" if few_shot is not None else "distillation never takes the few-shot route"
        raise ConfigError(
            f"search_space.{own[0]}: the trials take the ordinary fine-tune ({why}), so {own[0]} changes nothing and "
            "every trial would train the same model; leave it out, or set few_shot: true to search the route."
        )
    if "few_shot_temperature" in names and "few_shot_loss" not in names and training.few_shot_loss != "supcon":
        raise ConfigError(
            f"search_space.few_shot_temperature: few_shot_loss is {training.few_shot_loss}, which has no temperature, "
            "so every trial would train the same model; set few_shot_loss: supcon, or leave it out."
        )
