"""Distillation building blocks on small hand-made tensors and tiny models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_transfer.core.layers import discover_layers
from hf_transfer.core.losses import LossNormaliser, classification_loss_sum
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL
from hf_transfer.distill.losses import (
    distillation_loss,
    hidden_state_loss_sum,
    kd_loss_sum,
    kd_multilabel_loss_sum,
    mix_probabilities,
    teacher_probabilities,
)
from hf_transfer.distill.students import (
    body_layer_map,
    build_student_from_teacher,
    check_label_sets,
    check_pooling_block_pairs,
    default_layer_map,
    evenly_spaced_layer_map,
)
from hf_transfer.errors import ConfigError


@pytest.fixture(autouse=True)
def seeded():
    """Each test's random tensors from seed 0, whatever ran before it (a failure can be reproduced alone), and the
    session's random state left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield


SMALL = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 99}
TEACHERS = {
    "bert": {**SMALL, "num_hidden_layers": 4},
    "roberta": {**SMALL, "num_hidden_layers": 4},
    "distilbert": {"n_layers": 4, "dim": 32, "n_heads": 2, "hidden_dim": 37, "vocab_size": 99},
}


def kl_by_hand(student, teacher, temperature):
    p = F.softmax(teacher / temperature, dim=-1)
    q = F.softmax(student / temperature, dim=-1)
    return temperature**2 * (p * (p.log() - q.log())).sum()


# --- KD losses --------------------------------------------------------------------------------------------------


def test_kd_is_zero_for_identical_logits_and_matches_the_formula():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    assert kd_loss_sum(logits, logits.clone(), 2.0).abs() < 1e-6
    student = torch.tensor([[0.5, 0.0, 1.0], [2.0, 1.0, 0.0]])
    for temperature in (1.0, 2.0, 4.0):
        torch.testing.assert_close(kd_loss_sum(student, logits, temperature), kl_by_hand(student, logits, temperature))
    # The per-example KL summed over the batch is batchmean-KL times the batch size.
    expected = (
        4.0
        * 2
        * F.kl_div(
            F.log_softmax(student / 2, -1), F.log_softmax(logits / 2, -1), log_target=True, reduction="batchmean"
        )
    )
    torch.testing.assert_close(kd_loss_sum(student, logits, 2.0), expected)


def test_kd_scales_by_t_squared():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    plain_kl = kl_by_hand(student, teacher, 3.0) / 9.0
    torch.testing.assert_close(kd_loss_sum(student, teacher, 3.0), 9.0 * plain_kl)


def test_kd_in_float32_with_mask_and_probabilities():
    student, teacher = torch.randn(4, 3, dtype=torch.bfloat16), torch.randn(4, 3, dtype=torch.bfloat16)
    total = kd_loss_sum(student, teacher, 2.0)
    assert total.dtype == torch.float32
    mask = torch.tensor([True, False, True, False])
    masked = kd_loss_sum(student, teacher, 2.0, mask=mask)
    torch.testing.assert_close(masked, kd_loss_sum(student[mask], teacher[mask], 2.0))
    probs = F.softmax(teacher.float() / 2.0, dim=-1)
    torch.testing.assert_close(kd_loss_sum(student, teacher_probs=probs, temperature=2.0), total)
    # A one-hot target (0·log 0 terms) stays finite.
    one_hot = torch.tensor([[1.0, 0.0, 0.0]])
    torch.testing.assert_close(
        kd_loss_sum(torch.tensor([[2.0, 0.0, 0.0]]), teacher_probs=one_hot),
        -F.log_softmax(torch.tensor([2.0, 0, 0]), 0)[0],
    )
    with pytest.raises(ValueError, match="exactly one"):
        kd_loss_sum(student, teacher, 2.0, teacher_probs=probs)


def test_gradients_reach_the_student_only():
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    total, terms = distillation_loss(
        student, teacher, torch.tensor([0, 1, 3]), alpha=0.5, temperature=2.0, problem_type=SINGLE_LABEL
    )
    total.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    assert not terms["kd"].requires_grad and not terms["ce"].requires_grad


def test_multilabel_kd_is_t_squared_bce_with_soft_targets():
    student, teacher = torch.randn(3, 5), torch.randn(3, 5)
    expected = 4.0 * F.binary_cross_entropy(torch.sigmoid(student / 2), torch.sigmoid(teacher / 2), reduction="sum")
    torch.testing.assert_close(kd_multilabel_loss_sum(student, teacher, 2.0), expected)
    # The minimum is at the teacher, where the gradient vanishes.
    at_teacher = teacher.clone().requires_grad_(True)
    kd_multilabel_loss_sum(at_teacher, teacher, 2.0).backward()
    torch.testing.assert_close(at_teacher.grad, torch.zeros_like(teacher))
    rows = torch.tensor([True, False, True])
    torch.testing.assert_close(
        kd_multilabel_loss_sum(student, teacher, 2.0, mask=rows),
        kd_multilabel_loss_sum(student[rows], teacher[rows], 2.0),
    )


# --- The combined loss ------------------------------------------------------------------------------------------


def test_alpha_zero_is_plain_cross_entropy_exactly():
    student, teacher, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 2, -100, 1])
    total, terms = distillation_loss(student, teacher, labels, alpha=0.0, temperature=3.0, problem_type=SINGLE_LABEL)
    assert torch.equal(terms["ce"], classification_loss_sum(student, labels, SINGLE_LABEL))
    torch.testing.assert_close(total, terms["ce"] / 3)  # the mean over the 3 labelled rows


def test_alpha_one_ignores_label_values():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    first, _ = distillation_loss(
        student, teacher, torch.tensor([0, 0, 0, 0]), alpha=1.0, temperature=2.0, problem_type=SINGLE_LABEL
    )
    second, _ = distillation_loss(
        student, teacher, torch.tensor([2, 1, 2, 1]), alpha=1.0, temperature=2.0, problem_type=SINGLE_LABEL
    )
    unlabelled, terms = distillation_loss(student, teacher, None, alpha=1.0, temperature=2.0)
    assert torch.equal(first, second) and torch.equal(first, unlabelled)
    torch.testing.assert_close(first, kd_loss_sum(student, teacher, 2.0) / 4)
    assert terms["ce"] == 0


def test_unlabelled_rows_get_the_soft_loss_only_each_term_with_its_own_normaliser():
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([1, -100, 0, 2])
    total, terms = distillation_loss(student, teacher, labels, alpha=0.3, temperature=2.0, problem_type=SINGLE_LABEL)
    keep = labels.ne(-100)
    # KD over all 4 rows (the unlabelled one too), CE over the 3 labelled ones.
    torch.testing.assert_close(terms["kd"], kd_loss_sum(student, teacher, 2.0))
    torch.testing.assert_close(terms["ce"], classification_loss_sum(student[keep], labels[keep], SINGLE_LABEL))
    torch.testing.assert_close(total, 0.3 * terms["kd"] / 4 + 0.7 * terms["ce"] / 3)


def test_a_given_normaliser_is_the_whole_accumulated_batch():
    """Two micro-batches normalised by the normaliser of both sum to the loss of the two as one batch."""
    student, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([1, -100, 0, 2, -100, 1])
    weights = torch.tensor([2.0, 1.0, 0.5])
    kw = dict(alpha=0.4, temperature=2.0, problem_type=SINGLE_LABEL, class_weights=weights)
    whole, _ = distillation_loss(student, teacher, labels, **kw)
    normaliser = LossNormaliser.of([labels[:3], labels[3:]], weights)
    parts = [distillation_loss(student[p], teacher[p], labels[p], normaliser=normaliser, **kw)[0] for p in (
        slice(0, 3), slice(3, 6))]  # fmt: skip
    torch.testing.assert_close(parts[0] + parts[1], whole)


def test_multilabel_mixture():
    student, teacher = torch.randn(2, 3), torch.randn(2, 3)
    labels = torch.tensor([[1.0, 0.0, -100.0], [0.0, 1.0, 1.0]])
    total, terms = distillation_loss(student, teacher, labels, alpha=0.5, temperature=1.0, problem_type=MULTI_LABEL)
    torch.testing.assert_close(terms["kd"], kd_multilabel_loss_sum(student, teacher, 1.0))
    torch.testing.assert_close(terms["ce"], classification_loss_sum(student, labels, MULTI_LABEL))
    torch.testing.assert_close(total, 0.5 * terms["kd"] / 6 + 0.5 * terms["ce"] / 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 1.5, "temperature": 1.0}, r"alpha must be in \[0, 1\].*1\.5"),
        ({"alpha": 0.5, "temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"alpha": 0.5, "temperature": 1.0, "problem_type": "regression"}, "problem_type must be one of"),
    ],
)
def test_distillation_loss_validates(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        distillation_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), **kwargs)


def test_shape_mismatch_points_to_label_sets():
    with pytest.raises(ConfigError, match="check_label_sets"):
        kd_loss_sum(torch.zeros(2, 3), torch.zeros(2, 4))


# --- Ensembles --------------------------------------------------------------------------------------------------


def ensemble(logits, weights=None, temperature=1.0, problem_type=SINGLE_LABEL):
    return mix_probabilities([teacher_probabilities(t, temperature, problem_type) for t in logits], weights)


def test_ensemble_is_the_weighted_average_of_softened_probabilities():
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    probs = ensemble([a, b], [3.0, 1.0], temperature=2.0)
    torch.testing.assert_close(probs, 0.75 * F.softmax(a / 2, -1) + 0.25 * F.softmax(b / 2, -1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    torch.testing.assert_close(ensemble([a, b]), (F.softmax(a, -1) + F.softmax(b, -1)) / 2)
    # A one-teacher ensemble is that teacher.
    student = torch.randn(2, 3)
    torch.testing.assert_close(
        kd_loss_sum(student, teacher_probs=ensemble([a], temperature=2.0), temperature=2.0),
        kd_loss_sum(student, a, 2.0),
    )
    multi = ensemble([a, b], [1.0, 1.0], problem_type=MULTI_LABEL)
    torch.testing.assert_close(multi, (torch.sigmoid(a) + torch.sigmoid(b)) / 2)


@pytest.mark.parametrize(
    ("logits", "weights", "match"),
    [
        ([], None, "at least one"),
        ([torch.zeros(2, 3)] * 2, [1.0], "2 teachers"),
        ([torch.zeros(2, 3)] * 2, [1.0, 0.0], "positive"),
        ([torch.zeros(2, 3), torch.zeros(2, 4)], None, "same shape"),
    ],
)
def test_ensemble_validates(logits, weights, match):
    with pytest.raises(ConfigError, match=match):
        ensemble(logits, weights)


# --- Hidden states ----------------------------------------------------------------------------------------------


def test_hidden_loss_skips_padding():
    student, teacher = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    teacher[1, 2] = float("nan")  # a padding position must not matter, whatever it holds
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    keep = mask.bool()
    mse = hidden_state_loss_sum(student, teacher, mask)
    torch.testing.assert_close(mse, ((student[keep] - teacher[keep]) ** 2).mean(-1).sum())
    cosine = hidden_state_loss_sum(student, teacher, mask, kind="cosine")
    torch.testing.assert_close(cosine, (1 - F.cosine_similarity(student[keep], teacher[keep], dim=-1)).sum())
    assert hidden_state_loss_sum(teacher[:1], teacher[:1], kind="cosine").abs() < 1e-5


def test_hidden_loss_projects_the_student_and_trains_the_projection():
    student = torch.randn(2, 3, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 6, requires_grad=True)
    with pytest.raises(ConfigError, match="projection"):
        hidden_state_loss_sum(student, teacher)
    projection = nn.Linear(4, 6)
    loss = hidden_state_loss_sum(student, teacher, torch.ones(2, 3), projection=projection)
    torch.testing.assert_close(loss, ((projection(student) - teacher) ** 2).mean(-1).sum())
    loss.backward()
    assert student.grad is not None and projection.weight.grad is not None and teacher.grad is None


def test_default_layer_map():
    assert default_layer_map([0, 2, 5], 6) == {0: 0, 1: 2, 2: 5}
    with pytest.raises(ConfigError, match=r"\[0, 6\)"):
        default_layer_map([0, 6], 6)


def test_evenly_spaced_layer_map_never_maps_below_block_0():
    """A student deeper than its teacher had block 0 mapped to teacher block -1: `hidden_states[0]`, the embeddings."""
    assert evenly_spaced_layer_map(3, 6) == {0: 1, 1: 3, 2: 5}
    assert evenly_spaced_layer_map(4, 2) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert evenly_spaced_layer_map(3, 1) == {0: 0, 1: 0, 2: 0}


def test_body_layer_map_keeps_a_few_shot_pooling_block_out_of_the_body():
    """A 7-block few-shot MiniLM teacher (block 6 pools): a separate 3-block student had block 2 paired with the
    pooling block ({0: 1, 1: 4, 2: 6}) and a 6-block one skipped teacher block 2; the body blocks are spaced over the
    body, and a pooling block pairs only with the other's."""
    assert evenly_spaced_layer_map(3, 7) == {0: 1, 1: 4, 2: 6}  # what the default was
    assert body_layer_map(3, 7, None, 6) == {0: 1, 1: 3, 2: 5}
    assert body_layer_map(6, 7, None, 6) == {i: i for i in range(6)}
    assert body_layer_map(3, 7, 2, 6) == {0: 2, 1: 5, 2: 6}
    assert body_layer_map(4, 6, 3, None) == {0: 1, 1: 3, 2: 5}  # the student's pooling block has no partner
    assert body_layer_map(3, 6, None, None) == evenly_spaced_layer_map(3, 6)
    check_pooling_block_pairs({0: 0, 1: 2, 2: 4, 3: 6}, 3, 6)  # a student cut with [0, 2, 4, 6]
    for layer_map, student_pooling, needle in (
        ({0: 1, 1: 3, 2: 6}, None, "teacher block 6 is the few-shot route's mean-pooling block"),
        ({0: 0, 1: 2, 2: 4, 3: 5}, 3, "student block 3 is the few-shot route's mean-pooling block.*teacher block 6"),
    ):
        with pytest.raises(ConfigError, match=needle):
            check_pooling_block_pairs(layer_map, student_pooling, 6)


# --- Students cut from a teacher --------------------------------------------------------------------------------


def tiny_teacher(model_type: str):
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, num_labels=3, **TEACHERS[model_type])
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("model_type", list(TEACHERS))
def test_student_copies_embeddings_kept_blocks_and_head(model_type, tmp_path):
    teacher = tiny_teacher(model_type)
    student = build_student_from_teacher(teacher, [1, 3]).eval()
    assert type(student) is type(teacher)
    assert student.config.num_hidden_layers == 2 and student.config.hf_transfer_student_layers == [1, 3]
    assert teacher.config.num_hidden_layers == 4  # the teacher's config is untouched

    t_layout, s_layout = discover_layers(teacher), discover_layers(student)
    t_params, s_params = dict(teacher.named_parameters()), dict(student.named_parameters())
    assert s_layout.embeddings == t_layout.embeddings and s_layout.head == t_layout.head
    for name in s_layout.embeddings + s_layout.head:
        assert torch.equal(s_params[name], t_params[name]), name
    for i, origin in enumerate([1, 3]):
        for s_name, t_name in zip(s_layout.blocks[i], t_layout.blocks[origin], strict=True):
            assert torch.equal(s_params[s_name], t_params[t_name]), s_name

    student.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 2 and reloaded.config.hf_transfer_student_layers == [1, 3]
    input_ids = torch.randint(5, 99, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids).logits, student(input_ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("model_type", list(TEACHERS))
def test_student_with_every_layer_is_the_teacher(model_type):
    teacher = tiny_teacher(model_type)
    student = build_student_from_teacher(teacher, [0, 1, 2, 3]).eval()
    input_ids = torch.randint(5, 99, (2, 7))
    with torch.no_grad():
        assert torch.equal(student(input_ids).logits, teacher(input_ids).logits)


@pytest.mark.parametrize("layers", [[], [0, 0], [2, 1], [0, 4], [-1]])
def test_student_layers_are_validated(layers):
    with pytest.raises(ConfigError, match=r"each in \[0, 4\) for this 4-block teacher"):
        build_student_from_teacher(tiny_teacher("bert"), layers)


# --- Label sets -------------------------------------------------------------------------------------------------


def test_label_sets():
    names = {0: "neg", 1: "neu", 2: "pos"}
    assert check_label_sets(names, dict(names)) is None
    assert check_label_sets(names, {"0": "neg", "1": "neu", "2": "pos"}) is None
    student = {0: "pos", 1: "neg", 2: "neu"}
    perm = check_label_sets(names, student)
    assert perm == [2, 0, 1]
    teacher_logits = torch.tensor([[10.0, 20.0, 30.0]])  # neg, neu, pos
    assert teacher_logits[:, perm].tolist() == [[30.0, 10.0, 20.0]]  # pos, neg, neu
    with pytest.raises(ConfigError, match=r"\['neg', 'neu', 'pos'\].*\['neg', 'pos'\]"):
        check_label_sets(names, {0: "neg", 1: "pos"})
    with pytest.raises(ConfigError, match="ids must be 0 to 1"):
        check_label_sets({0: "a", 2: "b"}, {0: "a", 1: "b"})


def test_label_refusals_name_at_most_twenty_labels():
    """With 120 labels the teacher/student refusals listed every one of them, twice: an error of thousands of
    characters on one line."""
    from types import SimpleNamespace

    from hf_transfer.distill.teachers import teacher_label_permutation
    from hf_transfer.merge.head import _joined

    teacher = {i: f"intent_{i}" for i in range(120)}
    with pytest.raises(ConfigError, match=r"intent_19', \.\.\. \(120 in all\)\] differ .*\(119 in all\)\]") as caught:
        check_label_sets(teacher, {i: f"intent_{i}" for i in range(119)})
    assert len(str(caught.value)) < 800 and "intent_20'" not in str(caught.value)
    config = SimpleNamespace(id2label=teacher)
    with pytest.raises(ConfigError, match=r"\(120 in all\)\] but the data has \[.*\(119 in all\)\]"):
        teacher_label_permutation(config, [f"intent_{i}" for i in range(119)], "teacher")
    assert _joined(["a", "b"]) == "a, b" and _joined(map(str, range(25))).endswith("19, ... (25 in all)")


def test_a_teachers_default_label_names_are_names_when_the_data_bears_them():
    """Data labelled LABEL_0 ... LABEL_10 (by an unnamed model's pipeline, say) sorts as LABEL_0, LABEL_1, LABEL_10,
    LABEL_2, ...: an unnamed teacher was matched to it by id, so the data's LABEL_10 got the teacher's LABEL_2."""
    from types import SimpleNamespace

    from hf_transfer.distill.teachers import teacher_label_permutation

    teacher = SimpleNamespace(id2label={i: f"LABEL_{i}" for i in range(11)})
    data = sorted(f"LABEL_{i}" for i in range(11))
    perm = teacher_label_permutation(teacher, data, "t")
    assert [f"LABEL_{i}" for i in perm] == data
    # Other names still match an unnamed teacher by id.
    assert teacher_label_permutation(teacher, [f"c{i}" for i in range(11)], "t") is None


def test_a_teachers_names_are_read_as_the_datas_labels_are():
    """A teacher trained when a csv's false/true were names of their own still matches the data's True/False (the
    spelling booleans now have), in its own order; names that would merge are compared as they are."""
    from types import SimpleNamespace

    from hf_transfer.distill.teachers import teacher_label_permutation

    assert teacher_label_permutation(SimpleNamespace(id2label={0: "false", 1: "true"}), ["False", "True"], "t") is None
    assert teacher_label_permutation(SimpleNamespace(id2label={0: "true", 1: "false"}), ["False", "True"], "t") == [
        1,
        0,
    ]
    with pytest.raises(ConfigError, match="distillation needs the same label set"):
        teacher_label_permutation(SimpleNamespace(id2label={0: "true", 1: "TRUE"}), ["False", "True"], "t")
