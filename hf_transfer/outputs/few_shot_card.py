"""The model card's account of the few-shot route (`hf-transfer train` on tiny training sets; train/few_shot.py)."""

from __future__ import annotations

# The Trainer fields the route's body tuning replaces by its own (few_shot.body_training_arguments): set for a run
# that takes the route, they change nothing. (`max_steps` is kept: it caps the body tuning, as it caps Trainer's.)
FEW_SHOT_REPLACES = {
    "learning_rate": "few_shot_learning_rate",
    "num_train_epochs": "few_shot_body_epochs",
    "per_device_train_batch_size": "few_shot_batch_size",
    "warmup_steps": "a warmup of a tenth of its steps",
}


def few_shot_rows(few_shot: dict | None, passed_over: str | None = None) -> list[tuple[str, str]]:
    """Rows of the card's few-shot table, from the run record's `few_shot` entry; or, for a run whose options or
    launch ruled out the route that `few_shot: auto` would have taken (`passed_over`, its decision), that decision:
    the same command in one process trains another model."""
    if passed_over and not few_shot:
        return [("route passed over", f"{passed_over}; the ordinary fine-tune ran")]
    if not few_shot:
        return []
    body, head = few_shot.get("body") or {}, few_shot.get("head") or {}
    validation = few_shot.get("validation") or {}
    rows = [("route chosen", str(few_shot.get("decision")))]
    if body:
        seconds = f", {body['seconds']:g} s" if body.get("seconds") is not None else ""
        epochs = f"{body['epochs']:g} epochs, " if body.get("epochs") is not None else ""
        batches = f"{body['batches_per_step']} batches of " if body.get("batches_per_step") else ""
        within = ", formed within each batch" if batches else ""
        if body.get("max_steps"):
            epochs = f"max_steps {body['max_steps']} (in place of few_shot_body_epochs): "
        if body.get("warmup_ratio") is not None:  # recorded since it was found missing from the card
            kind = body.get("lr_scheduler_type") or "linear"
            seconds = f" ({kind} schedule, warmup over the first {100 * body['warmup_ratio']:g}% of steps){seconds}"
        rows.append(
            (
                "body tuning",
                f"{epochs}{body['steps']} steps of {batches}{body['batch_size']} training rows "
                f"({body['pairs_per_step']} pairs of rows each{within}) at lr {body['learning_rate']:g}{seconds}; "
                f"loss: {body['loss']}",
            )
        )
    template = few_shot.get("label_template") or {}
    if template.get("rows"):
        rows.append(
            (
                "label-name rows",
                f"{template['rows']} rows added to the labelled ones, {template['copies_per_class']} per class: "
                f"{template['template']!r} filled with {', '.join(template['labels'])} (no extra body-tuning steps)",
            )
        )
    elif template.get("skipped"):
        rows.append(("label-name rows", f"none added: {template['skipped']}"))
    if body.get("body_mix", 1) != 1:
        rows.append(("body", f"{body['body_mix']:g}·tuned + {1 - body['body_mix']:g}·pretrained, weight by weight"))
    if head:
        # Records from before the layers were named: the layer before the final one (a pooler only in BERT-likes).
        dense = f"`{head['dense_layer']}`" if head.get("dense_layer") else "the dense layer before the final one"
        activation = f" (before its {head['activation']})" if head.get("activation") else ""
        final = f"`{head['final_layer']}`" if head.get("final_layer") else "the final linear layer"
        rows.append(
            (
                "head",
                f"{head['kind']}; C = {head['C']:g}, accuracy on its {head['training_rows']} training rows "
                f"{head['training_accuracy']:.4f}",
            )
        )
        rows.append(
            (
                "how the head is stored",
                f"block {head['mean_pooling_block']} (added; {head['num_hidden_layers']} blocks in all) puts the "
                "masked mean of the last hidden states at the first position (zero queries and keys, identity "
                f"values, output scaled by {head['mean_scale']:g}, then LayerNorm); {dense} is "
                f"{head['pooler_scale']:g}·identity{activation} and {final} holds the fitted head, so the model "
                "loads as a standard classifier",
            )
        )
    if validation:
        rows.append(("validation", str(validation.get("policy"))))
    return rows
