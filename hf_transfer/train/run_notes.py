"""What the end-of-run summary says of how the saved model came to be, beside its scores: a reloaded best checkpoint,
an early stop, a resume and folded calibration offsets each make the final figures differ from the last ones logged
during training, and a `Trainer` user comparing the two would otherwise see numbers from nowhere."""

from __future__ import annotations


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def run_notes(facts: dict) -> dict[str, str]:
    """One line each, from the run record's facts (`best_model`, `early_stopping`, `resumed_from`, `adapter`,
    `calibration`)."""
    notes = {}
    if resumed := facts.get("resumed_from"):
        step = f" (step {resumed['step']})" if resumed.get("step") is not None else ""
        notes["resumed_from"] = f"{resumed['checkpoint']}{step}"
    if stop := facts.get("early_stopping"):
        if stop.get("stopped_early"):
            notes["stopped_early"] = (
                f"at step {stop['steps_trained']} of {stop['max_steps']}: no {stop['metric']} gain in "
                f"{stop['patience']} evaluations"
            )
    if best := facts.get("best_model"):
        where = "the last step" if best["step"] == best["last_step"] else f"the run went on to {best['last_step']}"
        unsaved = best.get("best_evaluation_unsaved")
        kind = "the best saved" if unsaved else "the best"
        missed = (
            f"; the best evaluation ({_number(unsaved['value'])} at step {unsaved['step']}) had no checkpoint"
            if unsaved
            else ""
        )
        notes["saved_model"] = (
            f"{best['checkpoint']}, {kind} {best['metric']} ({_number(best['value'])}) at step {best['step']} "
            f"({where}){missed}; the scores below are this checkpoint's"
            + (", with the calibration offsets" if facts.get("calibration") else "")
        )
    if (adapter := facts.get("adapter")) and adapter.get("trainable_parameters") is not None:
        rank = f" (r={adapter['r']})" if adapter.get("r") else ""
        notes["adapter"] = (  # a LoRA run's summary read as a full fine-tune's
            f"{adapter['method']}{rank} on {adapter['base_model_name_or_path']}: {adapter['trainable_parameters']:,} "
            f"of {adapter['total_parameters']:,} parameters trained ({adapter['trainable_percent']:.2f}%)"
        )
    if calibration := facts.get("calibration"):
        before = (calibration.get("validation_before") or {}).get("f1_macro")
        was = f"; validation macro-F1 before them {before:.4f}" if isinstance(before, float) else ""
        notes["calibrated"] = (
            f"{calibration['kind']} fitted on {calibration['calibration_rows']:,} carved rows, folded into "
            f"{calibration['folded_into']}{was}; the scores below are after them"
        )
    return notes
