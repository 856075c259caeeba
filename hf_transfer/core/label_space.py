"""The label space of prepared data, decided from each split's `LabelProfile` (counts, first examples and distinct
values gathered frame by frame): single- or multi-label, label types that cannot be classes, and the names and ids."""

from __future__ import annotations

import logging

from hf_transfer.core.arguments import DataArguments
from hf_transfer.core.cleaning import LabelProfile, normalise_scalar
from hf_transfer.core.tasks import MULTI_LABEL, SINGLE_LABEL
from hf_transfer.errors import DataError

logger = logging.getLogger(__name__)


def detect_problem_type(args: DataArguments, profiles: dict[str, LabelProfile], label: str) -> str:
    labelled = {s: p for s, p in profiles.items() if p.labelled}
    has_lists = any(p.lists for p in labelled.values())
    has_scalars = any(p.scalars for p in labelled.values())
    if args.problem_type == MULTI_LABEL and has_scalars or args.problem_type is None and has_lists and has_scalars:
        split, profile = next((s, p) for s, p in labelled.items() if p.scalars)
        raise DataError(
            f"multi-label data needs a list label in every row, but {profile.scalars} row(s) of the {split} column "
            f'{label!r} hold single values such as {profile.first_scalar!r}; write them as lists like ["a", "b"] '
            "(a JSON list string in csv/tsv), or set problem_type single_label_classification."
        )
    if args.problem_type == SINGLE_LABEL and has_lists:
        split, profile = next((s, p) for s, p in labelled.items() if p.lists)
        raise DataError(
            f"problem_type is single_label_classification but the {split} column {label!r} holds lists such as "
            f"{profile.first_list!r}; set problem_type multi_label_classification, or give one label per row."
        )
    if args.problem_type is None and not has_lists and "train" in labelled:
        warn_joined_labels(labelled["train"].values, label)
    if not has_lists and "train" in labelled and args.label_mapping is None:
        warn_missing_like(labelled["train"].values, label)
    return MULTI_LABEL if has_lists else SINGLE_LABEL


def unlabel_hidden_test_labels(profiles: dict[str, LabelProfile]) -> None:
    """GLUE's test files mark each row's hidden label -1: a test split whose every label is -1, a value the training
    labels lack, is read as unlabelled (its predictions are written), not refused as an unknown class."""
    test, train = profiles.get("test"), profiles.get("train")
    if test is None or not test.labelled or test.values != {-1} or (train is not None and -1 in train.values):
        return
    logger.warning("every label of the test data is -1, the mark of a hidden label (GLUE): it is read as unlabelled.")
    profiles["test"] = LabelProfile()


# ASCII, and the full-width and ideographic marks that Chinese and Japanese text joins a list with (`物流、质量`).
LABEL_SEPARATORS = (";", "|", ",", "、", "，", "；", "｜")


def split_joined(value, sep: str) -> list[str] | None:
    """The labels a cell joins with `sep` (`Tops;recommended` -> ["Tops", "recommended"]), or None when it does not
    hold `sep` between non-empty parts."""
    if not isinstance(value, str) or sep not in value:
        return None
    parts = [p.strip() for p in value.split(sep)]
    return parts if all(parts) else None


def joined_labels(values) -> tuple[str, list[str]] | None:
    """(separator, examples) when string labels look like several labels joined in one cell (`Tops;recommended`):
    two or more values hold the separator, and their parts recur (as values of their own or across values)."""
    texts = [v for v in values if isinstance(v, str)]
    for sep in LABEL_SEPARATORS:
        joined = sorted(v for v in texts if split_joined(v, sep))
        parts = [p for v in joined for p in split_joined(v, sep)]
        if len(joined) >= 2 and (len(set(parts)) < len(parts) or set(parts) & set(texts)):
            return sep, joined[:2]
    return None


# How spreadsheets and pandas write a missing value: an empty cell is left out, but these are read as text.
MISSING_LIKE = frozenset({"nan", "null", "n/a", "na", "#n/a", "?"})  # not `none`, `missing`: classes in some tasks


def warn_missing_like(values, label: str) -> None:
    """A label such as `NaN` or `N/A` (a missing value written as text) became a class of its own, silently."""
    found = sorted(v for v in values if isinstance(v, str) and v.strip().lower() in MISSING_LIKE)
    if found:
        logger.warning(
            f"the training column {label!r} holds {', '.join(map(repr, found))}, read as a class of its own; if these "
            "mark missing labels, leave those cells empty (rows without a label are left out) or drop the rows."
        )


def warn_joined_labels(values, label: str) -> None:
    found = joined_labels(values)
    if found:
        sep, examples = found
        logger.warning(
            f"the training column {label!r} holds values such as {examples[0]!r} and {examples[1]!r}, several labels "
            f"joined by {sep!r}: each such value is read as one class of its own. For multi-label data write each "
            'row\'s labels as a list (["a", "b"], a JSON list string in csv/tsv).'
        )


def check_label_types(args: DataArguments, profiles: dict[str, LabelProfile], label: str) -> None:
    for split, profile in profiles.items():
        if profile.first_repeated is not None:  # [0, 0, 1] was read as ids 0 and 1: silently other labels
            raise DataError(
                f"the {split} column {label!r} holds a list that names a label twice, {profile.first_repeated!r}; a "
                "multi-label row lists each of its labels once, by name or id. A multi-hot row (one 0/1 per label, "
                "[0, 0, 1]) is not read as such: write the ids it marks ([2]) or the names."
            )
    if args.label_mapping is not None:  # values are compared as strings, so any mix of types is fine
        return
    for split, profile in profiles.items():
        by_type = profile.first_of_type
        if float in by_type:
            raise DataError(
                f"the {split} column {label!r} holds non-integer numbers such as {by_type[float]!r}; classification "
                "needs class labels. Map them to names with label_mapping, or use another label column."
            )
        if int in by_type and str in by_type:
            other = by_type[str]
            texts = {v for v in profile.values if isinstance(v, str)}
            kind = "booleans" if texts <= {"True", "False"} else "strings"  # true/false in any spelling reads so
            raise DataError(
                f"the {split} column {label!r} mixes integers and {kind} (e.g. {by_type[int]!r} and {other!r}); use "
                "one type, or label_mapping to name both."
            )


def label_space(args: DataArguments, profiles: dict[str, LabelProfile], class_names: list[str] | None):
    """Label names in id order, a value -> id dict, and whether unknown values are dropped (label_mapping only)."""
    if args.label_mapping is not None:
        # Keys are compared as strings of normalised values, so `4`, `"4"` and `4.0` all match rating 4.
        _check_mapping_matches(args.label_mapping, {str(normalise_scalar(k)) for k in args.label_mapping}, profiles)
        # Scoring a model (`core.eval_sets`): its own label names read as themselves beside the mapping.
        mapping = {**{str(n): str(n) for n in getattr(args, "passing_names", ())}, **args.label_mapping}
        names = list(dict.fromkeys(mapping.values()))
        return names, {str(normalise_scalar(k)): names.index(n) for k, n in mapping.items()}, True
    if args.class_names is not None:
        _check_class_names(args.class_names)
    names = args.class_names or class_names
    if names is not None:
        return list(names), {i: i for i in range(len(names))} | {n: i for i, n in enumerate(names)}, False
    reference = [profiles["train"]] if "train" in profiles else [p for p in profiles.values() if p.labelled]
    values = sorted({v for p in reference for v in p.values})
    ids = {v: v for v in values} if values == list(range(len(values))) else {v: i for i, v in enumerate(values)}
    return [str(v) for v in values], ids, False


def _check_mapping_matches(mapping: dict, ids, profiles: dict[str, LabelProfile]) -> None:
    """A label_mapping whose keys match no label of the data drops every row (the error then named a single class of
    the mapping's own, which no row has)."""
    split = "train" if "train" in profiles else next((s for s, p in profiles.items() if p.labelled), None)
    found = profiles[split].values if split else set()
    if found and not any(str(value) in ids for value in found):
        shown = sorted(found, key=str)
        more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
        raise DataError(
            f"label_mapping {mapping} matches none of the {split} data's labels {shown[:10]}{more} (all "
            f"{profiles[split].rows} have a label that is not a key of label_mapping): its keys must be label values "
            "found in the data. Fix the keys, check label_column_name, or give --label_mapping null to read the "
            "labels as the data has them."
        )


def _check_class_names(names: list[str]) -> None:
    """class_names that spell integers other than their own ids (`[1, 2, 3]` for ids 0..2) are refused: the data's
    integer labels are ids here, but `evaluate`, `predict` and `merge` read a file's integers as the model's names
    when those names are integers, so the same file's 1 would be id 1 in training and id 0 there."""
    numbers = [normalise_scalar(n) for n in names]
    if any(isinstance(v, int) for v in numbers) and numbers != list(range(len(names))):
        raise DataError(
            f"class_names {names} holds integers that are not their ids 0..{len(names) - 1} (id 0 would be named "
            f"{names[0]!r}): evaluate and predict read a file's integer labels as such names, so the same file would "
            "mean other classes there. Use names that are not integers (e.g. '1 star'), or label_mapping (and give "
            "evaluate the same label_mapping)."
        )


def case_variants(names, known=None) -> list[list[str]]:
    """Groups of names that differ only in letter case (`Positive` and `positive`), each name against the others or,
    given `known`, against those."""
    groups: dict[str, list[str]] = {}
    for name in known if known is not None else names:
        groups.setdefault(str(name).casefold(), []).append(str(name))
    if known is not None:
        return [[str(n), *groups[str(n).casefold()]] for n in names if str(n).casefold() in groups]
    return [group for group in groups.values() if len(group) > 1]


def warn_case_variants(names: list[str]) -> None:
    """Label names alike but for case are separate classes; most often one is a typo of the other."""
    alike = case_variants(names)
    if alike:
        logger.warning(
            f"the labels {alike} differ only in letter case, so each is a class of its own; if they are one class, "
            "write them alike in the data (or join them with label_mapping)."
        )


def check_trained_classes(counts: dict[str, int], multi: bool, args: DataArguments, cut: str = "") -> None:
    """Classes that class_names or label_mapping name but no training row holds get an output that is never trained
    towards (said before the run, as the card's label counts say it after). Single-label rows of one class alone
    are refused: class_names [negative, positive] on a file of one class, or a label_mapping that left one class
    (a ratings recipe's on 0/1 labels), had trained a model that always says it, and reported accuracy 1.0. `cut`:
    what selected the rows, when it was not the data alone."""
    held = [name for name, count in counts.items() if count]
    if not multi and len(held) < 2:
        source = "label_mapping" if args.label_mapping is not None else "class_names" if args.class_names else None
        hint = f"--{source} null reads the labels as the data has them, or " if source else ""
        if cut:  # the file holds more classes (load_data checked them): its first rows do not
            hint = "The file may be sorted by label: shuffle it, or raise max_train_samples"
        else:
            hint = f"Check label_column_name; {hint}add rows of the other classes"
        raise DataError(
            f"the training rows{cut} hold a single class {held} of the {len(counts)} named {list(counts)}; a "
            f"classifier needs examples of at least two. {hint}."
        )
    empty = [name for name, count in counts.items() if count == 0]
    if empty and not cut:
        logger.warning(
            f"no training row has the label(s) {empty} that class_names or label_mapping name: the model gets an "
            "output for each that it cannot learn to predict. Add such rows, or drop the name(s)."
        )


def warn_unmapped(split: str, dropped: int, rows: int, args: DataArguments) -> None:
    """Rows whose label label_mapping does not name are left out by design (a mapping that drops the neutral
    ratings), but a mapping written for other data left out a whole label value in silence."""
    if dropped and args.label_mapping is not None:
        logger.warning(
            f"label_mapping names no class for {dropped} of the {rows} {split} rows: they are left out "
            "(--label_mapping null reads the labels as the data has them)."
        )
