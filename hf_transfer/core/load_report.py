"""What loading a classifier's weights says: transformers' "LOAD REPORT" table (shown on every training, with ANSI
bold codes in a log file, for a new head that is expected) replaced by lines that say what matters."""

from __future__ import annotations

import contextlib
import logging

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def head_restored_later():
    """Loading a base whose head an adapter or a fine-tuned model puts back: transformers' load report ("MISSING ...
    newly initialized ... Consider training") is not shown, since it is not so for the model that runs."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity(max(level, transformers_logging.ERROR))
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def _listed(keys: list[str], most: int = 4) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def say_loading(model, info: dict, name_or_path: str, head_from_elsewhere: bool) -> None:
    """The load report of `from_pretrained(..., output_loading_info=True)`, as lines: weights of the body that the
    checkpoint lacks (they start random: a warning, as a base saved without its pooler), then at info level a new
    head (expected when adapting a base; not said when `head_from_elsewhere` puts one back), weights of a mismatched
    shape replaced (`ignore_mismatched_sizes`) and checkpoint weights the architecture does not use."""
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    missing = sorted(map(str, info.get("missing_keys") or ()))
    body = [key for key in missing if key.startswith(prefix)]
    head = [key for key in missing if not key.startswith(prefix)]
    mismatched = sorted(str(k[0] if isinstance(k, (tuple, list)) else k) for k in info.get("mismatched_keys") or ())
    unused = sorted(map(str, info.get("unexpected_keys") or ()))
    name = type(model).__name__
    if body:
        logger.warning(
            f"{len(body)} weight(s) of {name}'s body are not in the checkpoint of {name_or_path!r} and start from "
            f"random values: {_listed(body)}. Check that it is the model meant."
        )
    if head and not head_from_elsewhere:
        labels = getattr(model.config, "num_labels", None)
        logger.info(f"a new classification head ({labels} labels) starts from random weights: {_listed(head)}.")
    if mismatched:
        logger.info(f"{len(mismatched)} weight(s) of another shape were replaced by new ones: {_listed(mismatched)}.")
    if unused:
        logger.info(f"{len(unused)} weight(s) of the checkpoint are not used by {name}: {_listed(unused)}.")
