"""The note that a model's validation scores are optimistic because `hf-transfer search` chose its settings on those
very rows: the best trial's own card says it, and so does a model retrained from `best_config.yaml` on the same rows
(the file records the search as `chosen_by_search`, which the config parser sets aside: it is no setting)."""

from __future__ import annotations

from hf_transfer.core.parsing import CHOSEN_BY_SEARCH


def chosen_note(chosen: dict) -> str:
    """The card's sentence for `chosen` ({trial, of, pruned, metric[, retrained]})."""
    pruned, of = chosen.get("pruned") or 0, chosen["of"]
    also = f" (and {pruned} pruned after scoring on the same rows)" if pruned else ""
    if chosen.get("retrained"):
        what = f"Its settings are those of trial {chosen['trial']} of `hf-transfer search`, chosen"
    else:
        what = f"This is trial {chosen['trial']}, chosen by `hf-transfer search`"
    return (
        f"{what} as the best of {of} completed trials{also} by {chosen['metric']} on this validation data: its scores "
        f"here are the best of {of + pruned} tries on the same rows, and read higher than on new data."
    )


def retrained_from_search(args, summary: dict) -> dict:
    """{chosen_by_search: ...} for the run record, when the run's config was a search's `best_config.yaml` (the parser
    leaves its record on `args`) and its validation rows are the rows the search chose on; else {} (scores on other
    rows are not the best of many tries on them)."""
    chosen = getattr(args, CHOSEN_BY_SEARCH, None)
    rows = (summary.get("validation") or {}).get("rows_sha256") if isinstance(summary, dict) else None
    if not isinstance(chosen, dict) or rows is None or rows != chosen.get("validation_rows_sha256"):
        return {}
    try:
        fields = {"trial": int(chosen["trial"]), "of": int(chosen["of"]), "pruned": int(chosen.get("pruned") or 0)}
    except (KeyError, TypeError, ValueError):  # an edited record: no claim the file cannot back
        return {}
    return {CHOSEN_BY_SEARCH: {**fields, "metric": str(chosen.get("metric", "the metric")), "retrained": True}}
