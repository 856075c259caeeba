"""The arguments of `hf-transfer merge`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

from hf_transfer.core.arguments import EvalDataArguments
from hf_transfer.core.folders import check_new_output_dir
from hf_transfer.core.run_records import recorded_revision
from hf_transfer.errors import ConfigError
from hf_transfer.merge.interpolation import check_alpha, parse_alphas

logger = logging.getLogger(__name__)


@dataclass
class MergeArguments(EvalDataArguments):
    """`hf-transfer merge`: interpolate weights, θ(α) = (1 − α)·θ_pretrained + α·θ_finetuned (WiSE-FT)."""

    pretrained: str | None = field(
        default=None,
        metadata={
            "help": "The model that was fine-tuned: Hub id or folder (a bare AutoModel checkpoint works). Required."
        },
    )
    finetuned: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the fine-tuned classifier, or of a PEFT adapter trained on `pretrained` (then α "
            "scales the adapter: LoRA through PEFT's scaling). Required."
        },
    )
    alpha: float | None = field(
        default=None,
        metadata={
            "help": "One α in [0, 1]: 0 is the --pretrained end (a base or a linear probe), 1 the fine-tuned model."
        },
    )
    alphas: list[float] | str | None = field(
        default=None,
        metadata={
            "help": "Several α to sweep, e.g. `0,0.25,0.5,0.75,1` or a YAML list; needs validation_file. Each α is "
            "evaluated on validation_file and every extra_eval set; the α with the best validation score is saved "
            "(ties: the largest α, the one closest to the fine-tuned model)."
        },
    )
    pretrained_revision: str | None = field(
        default=None,
        metadata={
            "help": "Branch, tag or commit of `pretrained` when it is a Hub id. Default: the model_revision the "
            "fine-tuned run recorded when it started from that same id, else main."
        },
    )
    head_init: str | None = field(
        default=None,
        metadata={
            "help": "A classifier folder with the same labels whose head (e.g. a zero-shot or linear-probe head) is "
            "interpolated with the fine-tuned head: head(α) = (1 − α)·head_init + α·head_finetuned. Default: "
            "`pretrained` itself when it is a classifier with the same labels (such as the `linear_probe/` folder of "
            "an LP-FT run), else the fine-tuned head at every α, since a bare pretrained model has none."
        },
    )
    selection_metric: Literal["accuracy", "f1_macro"] = field(
        default="accuracy", metadata={"help": "Validation metric that picks α in a sweep."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where the interpolated model (at the chosen α) and its report go. Required."}
    )
    base_model_hub_id: str | None = field(
        default=None,
        metadata={"help": "Hub id of `pretrained` when it is a local folder, for the card (as in `train`)."},
    )

    def __post_init__(self):
        for name in ("pretrained", "finetuned", "output_dir"):
            if not getattr(self, name) or not str(getattr(self, name)).strip():
                raise ConfigError(
                    f"{name} is required: hf-transfer merge --pretrained DIR_OR_ID --finetuned DIR "
                    "[--alpha A | --alphas 0,0.25,0.5,0.75,1 --validation_file FILE] --output_dir DIR."
                )
        if self.alpha is not None and self.alphas is not None:
            raise ConfigError(f"give either alpha ({self.alpha}) or alphas ({self.alphas!r}), not both.")
        if self.alpha is None and self.alphas is None:
            raise ConfigError(
                "no α given: pass --alpha A (0 = pretrained, 1 = fine-tuned), or --alphas 0,0.25,0.5,0.75,1 with "
                "--validation_file FILE to pick α on validation data."
            )
        if self.alpha is not None:
            self.alpha = check_alpha(self.alpha)
        else:
            self.alphas = parse_alphas(self.alphas)
            if not self.validation_file:
                raise ConfigError(
                    "alphas sweeps α and keeps the best on validation data: give --validation_file FILE, or a "
                    "single --alpha."
                )
        self._check_eval_data()
        for name in (s.name for s in self.eval_sets()):  # the α sweep's rows hold each set beside these keys
            if name == "alpha" or name.startswith("mean_extra_"):
                raise ConfigError(
                    f"a set named {name!r} would overwrite the α sweep's own {name!r} column; name the set otherwise."
                )
        if os.path.isdir(self.pretrained) and os.path.realpath(self.pretrained) == os.path.realpath(self.finetuned):
            # every α gave the same weights, and the card described an interpolation
            raise ConfigError(
                f"pretrained and finetuned are the same folder {self.finetuned!r}, so every α gives that model; "
                "give as pretrained the model it was fine-tuned from."
            )
        out = os.path.realpath(self.output_dir)
        for name in ("pretrained", "finetuned", "head_init"):
            value = getattr(self, name)
            if value and os.path.exists(value) and os.path.realpath(value) == out:
                raise ConfigError(f"output_dir {self.output_dir!r} is the {name} folder; write the result elsewhere.")
        check_new_output_dir(self.output_dir, "merge")
        if self.pretrained_revision not in (None, "main") and os.path.exists(self.pretrained):
            raise ConfigError(
                f"pretrained_revision {self.pretrained_revision!r} is for a Hub id, and {self.pretrained!r} is a "
                "local folder."
            )
        recorded = recorded_revision(self.finetuned, self.pretrained)
        if self.pretrained_revision not in (None, recorded):  # then the shapes may differ, or the weights silently
            logger.warning(
                "the fine-tuned run started from %r at revision %r, and pretrained_revision is %r.",
                self.pretrained, recorded, self.pretrained_revision,
            )  # fmt: skip
        self.pretrained_revision = self.pretrained_revision or recorded

    @property
    def alpha_grid(self) -> list[float]:
        return [self.alpha] if self.alpha is not None else list(self.alphas)
