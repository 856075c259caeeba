"""Students cut from a teacher (its embeddings, some of its blocks and its head), the layer maps between student and
teacher blocks, and label-set alignment."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

from transformers import PreTrainedModel

from hf_transfer.core.cleaning import listed
from hf_transfer.core.layers import ModelLayout, discover_layers
from hf_transfer.errors import ConfigError


def check_student_layers(student_layers: Sequence[int], teacher_depth: int) -> list[int]:
    layers = list(student_layers)
    valid = (
        len(layers) > 0
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < teacher_depth for i in layers)
        and all(a < b for a, b in zip(layers, layers[1:], strict=False))
    )
    if not valid:
        example = sorted({0, teacher_depth // 2, max(teacher_depth - 1, 0)})  # distinct, even for 1 or 2 blocks
        raise ConfigError(
            f"student_layers must be a non-empty list of distinct teacher block indices in ascending order, each in "
            f"[0, {teacher_depth}) for this {teacher_depth}-block teacher; got {layers}. "
            f"For example {example} keeps blocks from the bottom to the top."
        )
    return layers


def default_layer_map(student_origins: Sequence[int], teacher_depth: int) -> dict[int, int]:
    """Student block i → teacher block `student_origins[i]`, as block indices (`hidden_states[i + 1]` is block i's).

    `student_origins` is what `build_student_from_teacher` records in `config.hf_transfer_student_layers`.
    """
    layers = check_student_layers(student_origins, teacher_depth)
    return dict(enumerate(layers))


def evenly_spaced_layer_map(student_depth: int, teacher_depth: int) -> dict[int, int]:
    """Student block i → the top teacher block of the i-th of `student_depth` equal slices (6 → 3: 1, 3, 5); a
    student deeper than its teacher maps several blocks to one (2 → 4: 0, 0, 1, 1), never below block 0."""
    return {i: max(round((i + 1) * teacher_depth / student_depth) - 1, 0) for i in range(student_depth)}


def body_layer_map(
    student_depth: int, teacher_depth: int, student_pooling: int | None, teacher_pooling: int | None
) -> dict[int, int]:
    """`evenly_spaced_layer_map` over the body blocks alone when a model ends with the few-shot route's mean-pooling
    block (`*_pooling`: its index, or None): that block's output is the mean-pooled embedding at every position, no
    token's state, so it pairs with the other model's pooling block, or with nothing."""
    student_body = student_depth - (student_pooling is not None)
    teacher_body = teacher_depth - (teacher_pooling is not None)
    layer_map = evenly_spaced_layer_map(student_body, teacher_body)
    if student_pooling is not None and teacher_pooling is not None:
        layer_map[student_pooling] = teacher_pooling
    return layer_map


def check_pooling_block_pairs(layer_map: dict[int, int], student_pooling: int | None, teacher_pooling: int | None):
    """No mapped pair has the few-shot route's mean-pooling block on one side only: it would pull token states
    towards the mean-pooled embedding, or the other way."""
    for s, t in layer_map.items():
        if (s == student_pooling) != (t == teacher_pooling):
            who, block, other = ("student", s, "teacher") if s == student_pooling else ("teacher", t, "student")
            partner = (teacher_pooling, student_pooling)[other == "student"]
            fix = f"map it to {other} block {partner}" if partner is not None else f"the {other} has none to match it"
            raise ConfigError(
                f"the layer map pairs student block {s} with teacher block {t}, but {who} block {block} is the "
                "few-shot route's mean-pooling block (its output is the mean-pooled embedding at every position, no "
                f"token's state) and the other an ordinary block; {fix}. Leave layer_map unset to pair body blocks "
                "with body blocks (and a pooling block with the other's, if any)."
            )


def check_layer_map(layer_map: Sequence[int], student_depth: int, teacher_depth: int) -> dict[int, int]:
    """A `layer_map` list (entry i is the teacher block matched by student block i) as a dict, checked."""
    layers = list(layer_map)
    if len(layers) != student_depth or not all(
        isinstance(j, int) and not isinstance(j, bool) and 0 <= j < teacher_depth for j in layers
    ):
        raise ConfigError(
            f"layer_map must list one teacher block in [0, {teacher_depth}) per student block ({student_depth} "
            f"entries), got {layers}."
        )
    return dict(enumerate(layers))


# Where a pre-norm model (GPT-2, Llama, OPT, ModernBERT...) keeps the norm it applies after its last block: that
# block's entry of hidden_states is normalised, every other one is not.
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")


def has_final_norm(layout: ModelLayout) -> bool:
    """Whether the module holding the blocks has a final norm of its own beside them (GPT-2's `ln_f`, Llama's
    `norm`): BERT-like models normalise inside each block, and DeBERTa-v2's `encoder.LayerNorm` is no such norm."""
    parent = ".".join(layout.block_modules[0].split(".")[:-2])
    prefix = f"{parent}." if parent else ""
    relative = [name[len(prefix) :] for name in layout.param_names if name.startswith(prefix)]
    return any(name.count(".") == 1 and name.split(".")[0] in FINAL_NORM_NAMES for name in relative)


def check_final_norm_pairs(layer_map: dict[int, int], student: tuple, teacher: tuple) -> None:
    """Each mapped pair's hidden states are normalised on both sides or on neither: a BERT-like model's are at every
    block (it normalises inside each), a pre-norm model's (GPT-2, Llama) only at its last, after its final norm, and
    the loss would pull a state of RMS about 1 towards one on another scale. `student`, `teacher`: (layout, depth)."""

    def normalised(side: tuple, block: int) -> bool:
        layout, depth = side
        return not has_final_norm(layout) or block == depth - 1

    for s, t in layer_map.items():
        if normalised(student, s) != normalised(teacher, t):
            raise ConfigError(
                f"the layer map pairs student block {s} with teacher block {t}, but only one of their hidden states "
                "is normalised (a pre-norm model's, GPT-2's or Llama's, only at its last block, after its final "
                "norm; a BERT-like model's at every block), so they are on different scales. Map a pre-norm model's "
                "last block to the other's last (set layer_map, or keep the teacher's last block in "
                "student_layers), or set hidden_loss_weight: 0."
            )


def build_student_from_teacher(teacher: PreTrainedModel, student_layers: Sequence[int]) -> PreTrainedModel:
    """A model of the teacher's class with only the blocks `student_layers` (teacher block `student_layers[i]` becomes
    block i), and the teacher's embeddings and head, all copied. The origins are recorded in
    `student.config.hf_transfer_student_layers`.
    """
    teacher_layout = discover_layers(teacher)
    depth = teacher_layout.depth
    config_depth = teacher.config.num_hidden_layers  # an attribute_map alias where needed (DistilBERT's n_layers)
    if depth != config_depth:
        raise ConfigError(
            f"{type(teacher).__name__} has {depth} distinct blocks but num_hidden_layers={config_depth} (weights "
            "grouped or shared across layers, as in Funnel or ALBERT), so a student cannot be cut from its blocks; "
            "train a smaller model instead."
        )
    layers = check_student_layers(student_layers, depth)

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    layer_types = getattr(config, "layer_types", None)  # per-layer attention kinds (Qwen2, Gemma, ...)
    if isinstance(layer_types, list) and len(layer_types) == depth:
        config.layer_types = [layer_types[i] for i in layers]
    config.hf_transfer_student_layers = list(layers)
    student = type(teacher)._from_config(config, dtype=teacher.dtype).to(teacher.device)

    student_layout = discover_layers(student)
    if student_layout.depth != len(layers):
        raise ConfigError(
            f"The student of {type(teacher).__name__} has {student_layout.depth} blocks, not the {len(layers)} asked "
            "for: this architecture does not size its blocks by num_hidden_layers."
        )
    # Student block prefix -> teacher block prefix; every other name (embeddings, head, buffers) maps to itself.
    renames = {
        f"{student_layout.block_modules[i]}.": f"{teacher_layout.block_modules[origin]}."
        for i, origin in enumerate(layers)
    }
    teacher_state = teacher.state_dict()
    state = {}
    for name in student.state_dict():
        prefix = next((p for p in renames if name.startswith(p)), None)
        source = name if prefix is None else renames[prefix] + name[len(prefix) :]
        state[name] = teacher_state[source]
    student.load_state_dict(state, strict=True)
    return student


def check_label_sets(
    teacher_id2label: Mapping[int | str, str], student_id2label: Mapping[int | str, str]
) -> list[int] | None:
    """None when teacher and student have the same labels in the same order; the permutation `perm` such that
    `teacher_logits[..., perm]` is in the student's order when they hold the same labels in another order.

    Raises ConfigError when the label sets differ.
    """
    teacher_names = _ordered_names(teacher_id2label, "teacher")
    student_names = _ordered_names(student_id2label, "student")
    if teacher_names == student_names:
        return None
    if sorted(teacher_names) != sorted(student_names) or len(set(teacher_names)) != len(teacher_names):
        raise ConfigError(
            f"The teacher's labels {listed(teacher_names)} differ from the student's {listed(student_names)}; "
            "distillation needs the "
            "same label set. Train the student on the teacher's labels, or pick a teacher trained on yours."
        )
    position = {name: index for index, name in enumerate(teacher_names)}
    return [position[name] for name in student_names]


def _ordered_names(id2label: Mapping[int | str, str], who: str) -> list[str]:
    """Label names in id order; ids may be strings, as in a config.json read by hand."""
    by_id = {int(key): str(name) for key, name in id2label.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise ConfigError(f"The {who}'s id2label ids must be 0 to {len(by_id) - 1}, got {sorted(by_id)}.")
    return [by_id[i] for i in range(len(by_id))]
