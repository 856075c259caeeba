"""`TransferTrainingArguments`: `TrainingArguments` plus the transfer-learning recipe (what to freeze, when to
unfreeze, how to decay learning rates, the frozen-feature cache)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from hf_transfer.core.arguments import parse_index_list
from hf_transfer.core.folders import check_not_under_a_file
from hf_transfer.core.losses import CLASS_WEIGHT_SCHEMES
from hf_transfer.core.runtime import (
    adopt_launch_precision,
    check_reporting_integrations,
    has_accelerator,
    launched_world_size,
)
from hf_transfer.errors import ConfigError
from hf_transfer.train.checks import check_half_evaluation, check_trainer_fields, keep_best_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class TransferTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the transfer-learning recipe: what to freeze, when to unfreeze, how to decay LRs."""

    freeze_embeddings: bool = field(default=False, metadata={"help": "Freeze the embedding layers."})
    freeze_layers: int | str | list[int] | None = field(
        default=None,
        metadata={
            "help": "Transformer blocks to freeze: an int N for the bottom N blocks, or a list of block indices "
            "such as [0, 1, 2] (0 is the block nearest the embeddings)."
        },
    )
    freeze_patterns: list[str] | None = field(
        default=None,
        metadata={"help": "Regexes; every parameter whose name matches one (re.search) is frozen."},
    )
    train_head_only: bool = field(
        default=False,
        metadata={"help": "Train only the task head (and pooler/final norm above the last block): a linear probe."},
    )
    gradual_unfreezing: int = field(
        default=0,
        metadata={
            "help": "ULMFiT gradual unfreezing: start with the head only and unfreeze one more block from the top "
            "every K epochs (the embeddings last). 0 turns it off."
        },
    )
    layerwise_lr_decay: float = field(
        default=1.0,
        metadata={
            "help": "Layer-wise LR decay γ in (0, 1]: the head gets `learning_rate`, block l from the top gets "
            "learning_rate·γ^l, the embeddings the lowest. 1 turns it off."
        },
    )
    cache_frozen_features: bool = field(
        default=False,
        metadata={
            "help": "Compute the frozen trunk's output (the hidden states entering the first trainable block) once, "
            "store it on disk, and train the blocks above and the head on it. Needs freeze_embeddings and a bottom "
            "range of freeze_layers (or train_head_only); `hf-transfer train` only."
        },
    )
    frozen_features_dtype: Literal["float32", "float16"] | None = field(
        default=None,
        metadata={
            "help": "Storage dtype of the frozen-feature cache (cache_frozen_features, and LP-FT's probe). Default "
            "float16: half the disk, and the same dev accuracy as float32 in the P3 benchmark (README); float32 makes "
            "training match naive freezing to float precision."
        },
    )
    frozen_features_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where frozen-feature caches live. Default: hf_transfer/frozen_features under HF_HOME."},
    )
    # --- quality: class weights, decision calibration, LP-FT, early stopping ---
    class_weights: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "Weights of the classes in the hard-label loss: `balanced` (n / (k · n_class), from the training "
            "rows), `sqrt` (its square root), or a mapping {label name: weight} (unnamed labels weigh 1). The loss "
            "is Σ wᵢ·ℓᵢ / Σ wᵢ over the whole accumulated batch; in distill it weighs the CE term."
        },
    )
    calibrate_decision: Literal["macro_f1"] | None = field(
        default=None,
        metadata={
            "help": "`macro_f1`: after training, tune per-class logit offsets (single-label; per-label thresholds for "
            "multi-label) to maximise macro-F1 on a calibration split carved from train (never the reported "
            "validation set), and fold them into the classifier's bias, so the saved model applies them."
        },
    )
    calibration_split_percentage: int = field(
        default=10,
        metadata={"help": "Percent of train held out (stratified; data_seed else seed) for calibrate_decision, 1-50."},
    )
    linear_probe_epochs: float = field(
        default=0.0,
        metadata={
            "help": "LP-FT (Kumar et al., 2022): first train the head alone for this many epochs on the frozen "
            "trunk's cached features, then fine-tune as configured from that head. 0 turns it off."
        },
    )
    linear_probe_learning_rate: float = field(
        default=1e-3, metadata={"help": "Learning rate of the linear-probe stage of LP-FT."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop after this many evaluations without improvement of metric_for_best_model (transformers' "
            "EarlyStoppingCallback), and keep the best checkpoint (load_best_model_at_end is switched on, and "
            "checkpoints are saved at every evaluation)."
        },
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much metric_for_best_model must improve to count as an improvement."}
    )
    # --- few-shot route (issue 21): pair-tuned body, a head fitted on mean-pooled embeddings (train/few_shot.py) ---
    few_shot: Literal["auto", "true", "false"] = field(
        default="auto",
        metadata={
            "help": "The small-data route: tune the body on pairs of training sentences, fit a logistic-regression "
            "head on mean-pooled embeddings, fold the pooling into an extra encoder block (a standard classifier). "
            "`auto` takes it for single-label data under few_shot_max_rows_per_class training rows per class on a "
            "sentence-transformers base with mean pooling, unless an option of the ordinary fine-tune is set "
            "(freezing, LLRD, adapters, LP-FT, calibration, early stopping, class weights...: docs/few_shot.md); "
            "without a validation_file it then trains on every row. Said when taken, or not taken on so few rows."
        },
    )
    few_shot_max_rows_per_class: float = field(
        default=100,
        metadata={
            "help": "few_shot auto: the route is taken below this many training rows per class (the mean over the "
            "classes: the training rows divided by the number of labels)."
        },
    )
    few_shot_body_epochs: float = field(
        default=16,
        metadata={
            "help": "Passes over the training rows of the few-shot body tuning (each step: a batch of "
            "few_shot_batch_size rows, every pair in it counts); the cost grows with the rows, not with the pairs. "
            "max_steps, when set, is the number of body-tuning steps instead."
        },
    )
    few_shot_batch_size: int = field(
        default=16, metadata={"help": "Training sentences per few-shot body-tuning step (B(B-1)/2 pairs)."}
    )
    few_shot_learning_rate: float = field(
        default=5e-5, metadata={"help": "Learning rate of the few-shot body tuning (linear decay, 10% warm-up)."}
    )
    few_shot_head_c: float = field(
        default=1.0,
        metadata={"help": "Inverse L2 strength C of the few-shot logistic-regression head (scikit-learn's C)."},
    )
    few_shot_loss: Literal["cosine", "supcon"] = field(
        default="cosine",
        metadata={
            "help": "Few-shot body-tuning loss over every pair of a batch: `cosine` (cosine similarity towards 1 for "
            "the same label, 0 for different ones, as SetFit) or `supcon` (supervised contrastive: each row's "
            "same-label rows against the whole batch, softmax over cosine/few_shot_temperature)."
        },
    )
    few_shot_temperature: float = field(default=0.1, metadata={"help": "Temperature of few_shot_loss supcon."})
    few_shot_body_mix: float = field(
        default=1.0,
        metadata={
            "help": "Share of the tuned body in the few-shot model's body: 1 keeps the tuned body, 0.5 averages it "
            "with the pretrained one weight by weight (WiSE-FT) before the head is fitted."
        },
    )
    few_shot_label_template: str | None = field(
        default="This sentence is {}.",
        metadata={
            "help": "Adds few_shot_template_copies training rows per class made from the label's name, 'This "
            "sentence is positive.' (SetFit's templated rows): the names' meaning joins the few labelled rows, at no "
            "extra body-tuning steps. Used only when every label name is a word (not 0/1 or LABEL_n) and the data are "
            "single sentences; `none` switches it off."
        },
    )
    few_shot_template_copies: int = field(
        default=8, metadata={"help": "Rows per class that few_shot_label_template adds (0: none)."}
    )
    # transformers 5 dropped TrainingArguments.overwrite_output_dir (its examples refused a non-empty output_dir
    # without it); an earlier run's output_dir is refused here unless a run resumes there or names this.
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that already holds an earlier run or a model, replacing it: once every "
            "check has passed, its checkpoint-N folders and the files hf-transfer writes are removed (other files "
            "stay). Without it such an output_dir is refused (resume_from_checkpoint continues a run there instead)."
        },
    )
    release_freed_memory: bool = field(
        default=False,
        metadata={
            "help": "CPU memory (glibc, Linux): give every freed block of 1 MiB or more back to the system at once, "
            "so the training peak stays near what a step holds (LoRA's peak above the model halves in the P5 "
            "benchmark) at about 0.6-0.7x the speed. Off by default."
        },
    )
    trim_memory_each_step: bool = field(
        default=False,
        metadata={
            "help": "CPU memory (glibc, Linux): after each optimizer step, hand the free pages left anywhere in the "
            "heap back to the system (malloc_trim), so holes left by batches of other shapes stop counting as "
            "resident: a lower training peak at a smaller speed cost than release_freed_memory (README, P5)."
        },
    )

    def __post_init__(self):
        self.freeze_layers = parse_index_list("freeze_layers", self.freeze_layers)
        if isinstance(self.freeze_layers, int) and self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be >= 0, got {self.freeze_layers}.")
        if isinstance(self.freeze_patterns, str):
            self.freeze_patterns = [self.freeze_patterns]
        if self.freeze_patterns:
            import re

            for pattern in self.freeze_patterns:
                try:
                    re.compile(pattern)
                except re.error as err:
                    raise ConfigError(f"freeze_patterns: {pattern!r} is not a valid regex ({err}).") from None
        if not (0.0 < self.layerwise_lr_decay <= 1.0) or math.isnan(self.layerwise_lr_decay):
            raise ConfigError(
                f"layerwise_lr_decay must be in (0, 1] (1 = off), got {self.layerwise_lr_decay}. "
                "Typical values are 0.8-0.95."
            )
        if self.gradual_unfreezing < 0:
            raise ConfigError(f"gradual_unfreezing must be >= 0 epochs (0 = off), got {self.gradual_unfreezing}.")
        if self.train_head_only and (self.freeze_layers is not None or self.freeze_embeddings):
            raise ConfigError(
                "train_head_only already freezes everything below the head; drop freeze_layers/freeze_embeddings, "
                "or drop train_head_only."
            )
        if self.train_head_only and self.gradual_unfreezing:
            raise ConfigError("train_head_only keeps the body frozen, so gradual_unfreezing would never unfreeze it.")
        if self.gradual_unfreezing and self.cache_frozen_features:
            raise ConfigError(
                "gradual_unfreezing changes which layers are frozen, so their features cannot be cached; "
                "drop cache_frozen_features or gradual_unfreezing."
            )
        if self.neftune_noise_alpha and self.cache_frozen_features:
            raise ConfigError(
                "neftune_noise_alpha adds noise to the embeddings' output, which cache_frozen_features computes once "
                "and then reads from its cache; drop one of them."
            )
        # LP-FT's probe trains on the cached trunk too: its cache takes these settings without cache_frozen_features.
        if not (self.cache_frozen_features or self.linear_probe_epochs) and (
            self.frozen_features_dtype is not None or self.frozen_features_cache_dir is not None
        ):
            raise ConfigError(
                "frozen_features_dtype and frozen_features_cache_dir set how the frozen-feature cache is stored; "
                "set cache_frozen_features: true (or linear_probe_epochs) too, or drop them."
            )
        self._check_training_ranges()
        self._check_quality_options()
        self._check_few_shot_options()
        if not self.use_cpu and launched_world_size() > 1 and not has_accelerator():
            # Launched as several processes on a machine without GPUs: accelerate joins CPU processes into one gloo
            # group only when asked for the CPU; otherwise each process silently trains alone on all the data.
            self.use_cpu = True
        origin = adopt_launch_precision(self)  # an accelerate config's mixed_precision, which Trainer runs
        if self.bf16 and self.fp16:  # else on the CPU the fp16 refusal below advised the --bf16 true already given
            raise ConfigError("bf16 and fp16 are both set; mixed precision takes one of them: drop one.")
        if self.bf16 and not self.use_cpu and not has_accelerator():
            # The CPU is the only device here, and the CPU has bf16 autocast; Trainer would stop with "Your setup
            # doesn't support bf16/gpu" until told use_cpu. The resolved config records use_cpu: true.
            logger.info("bf16 with no accelerator found: training on the CPU in bf16 (use_cpu: true).")
            self.use_cpu = True
        if self.use_cpu or not has_accelerator():
            self.dataloader_pin_memory = False  # nothing to pin for; torch would warn on every dataloader
            if self.fp16:
                # accelerate applies no fp16 autocast on the CPU: the run trained in fp32, recorded as fp16.
                raise ConfigError(
                    f"fp16{origin} needs a GPU, and this run is on the CPU (use_cpu, or no accelerator found), where "
                    "it would train in fp32; for mixed precision on the CPU use --bf16 true --use_cpu true, or drop "
                    "fp16."
                )
        if self.report_to is None:  # `report_to: null`: no reporting (TrainingArguments made it [None], a crash)
            self.report_to = "none"
        check_half_evaluation(self)  # before Trainer's own check of bf16_full_eval, which names no field
        super().__post_init__()
        self.report_to = check_reporting_integrations(self.report_to)  # `tensorboard,wandb` is two, as other lists
        check_trainer_fields(self)  # what Trainer refuses only once the weights have loaded

    def _check_training_ranges(self) -> None:
        # Trainer would stop on these with a traceback once output_dir exists, or (epochs) train nothing and save.
        if self.output_dir is not None and not str(self.output_dir).strip():  # makedirs('') failed once loaded
            raise ConfigError(
                f"output_dir is blank ({self.output_dir!r}); give the folder the run writes, e.g. out/run1."
            )
        if self.output_dir:
            check_not_under_a_file(self.output_dir, "this run")  # Trainer's makedirs raised FileExistsError
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_steps <= 0 and not self.num_train_epochs > 0 and not self.linear_probe_epochs:
            raise ConfigError(f"num_train_epochs must be > 0 (or set max_steps), got {self.num_train_epochs}.")
        # Each of these failed only once the weights had loaded: a traceback (inf epochs, a seed numpy refuses, label
        # smoothing torch refuses, Adam betas or epsilon torch refuses, a warmup int() cannot convert) or a NaN model
        # (NaN weight decay); a NaN clip norm was ignored, silently. A learning rate of 0 trained nothing: every step
        # left the weights as they were, and the model was saved as trained.
        grad_norm, lp_lr = self.max_grad_norm, self.linear_probe_learning_rate
        limits = {
            "learning_rate": (0 < self.learning_rate < math.inf, "> 0 and finite (typically 1e-5 to 1e-3)"),
            "linear_probe_learning_rate": (0 < lp_lr < math.inf, "> 0 and finite (typically 1e-3 to 1e-2)"),
            "num_train_epochs": (math.isfinite(self.num_train_epochs), "a finite number"),
            "warmup_steps": (0 <= self.warmup_steps < math.inf, "finite and >= 0 (steps, or below 1 a fraction)"),
            "adam_beta1": (0 <= self.adam_beta1 < 1, "in [0, 1)"),
            "adam_beta2": (0 <= self.adam_beta2 < 1, "in [0, 1)"),
            "adam_epsilon": (0 <= self.adam_epsilon < math.inf, "finite and >= 0"),
            "seed": (0 <= self.seed < 2**32, "in [0, 2**32 - 1]"),
            "label_smoothing_factor": (0 <= self.label_smoothing_factor < 1, "in [0, 1)"),
            "weight_decay": (0 <= self.weight_decay < math.inf, "finite and >= 0"),
            "max_grad_norm": (grad_norm is None or not math.isnan(grad_norm), "a number (0 = no clipping)"),
            "max_steps": (self.max_steps >= -1, "> 0, or -1 (or 0) to train num_train_epochs"),  # -5 was "off"
            "linear_probe_epochs": (0 <= self.linear_probe_epochs < math.inf, ">= 0 and finite (0 = off)"),
            "early_stopping_threshold": (0 <= self.early_stopping_threshold < math.inf, ">= 0 and finite"),
        }
        for name, (ok, expected) in limits.items():
            if not ok:
                raise ConfigError(f"{name} must be {expected}, got {getattr(self, name)}.")

    def _check_quality_options(self) -> None:
        if isinstance(self.class_weights, str) and self.class_weights not in CLASS_WEIGHT_SCHEMES:
            raise ConfigError(
                f"class_weights must be one of {', '.join(CLASS_WEIGHT_SCHEMES)} or a mapping {{label: weight}}, got "
                f"{self.class_weights!r}."
            )
        if isinstance(self.class_weights, dict):
            bad = {
                k: v
                for k, v in self.class_weights.items()
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf
            }
            if bad:
                raise ConfigError(f"class_weights must map labels to positive numbers, got {bad}.")
        elif self.class_weights is not None and not isinstance(self.class_weights, str):
            raise ConfigError(f"class_weights must be balanced, sqrt or a mapping, got {self.class_weights!r}.")
        if not 1 <= self.calibration_split_percentage <= 50:
            raise ConfigError(
                f"calibration_split_percentage must be between 1 and 50, got {self.calibration_split_percentage}."
            )
        if self.linear_probe_epochs and (self.train_head_only or self.gradual_unfreezing):
            raise ConfigError(
                "linear_probe_epochs already trains the head first; drop train_head_only and gradual_unfreezing."
            )
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ConfigError(
                    f"early_stopping_patience must be >= 1 evaluation, got {self.early_stopping_patience}."
                )
            if str(self.eval_strategy) in ("no", "IntervalStrategy.NO"):
                raise ConfigError(
                    "early_stopping_patience counts evaluations, but eval_strategy is no; set eval_strategy to epoch "
                    "or steps."
                )
            keep_best_checkpoint(self)  # saves at every evaluation; the best checkpoint is kept
            if self.save_total_limit is None:
                self.save_total_limit = 1

    def _check_few_shot_options(self) -> None:
        if isinstance(self.few_shot, bool):  # Python callers may pass a bool
            self.few_shot = "true" if self.few_shot else "false"
        if self.few_shot not in ("auto", "true", "false"):
            raise ConfigError(f"few_shot must be auto, true or false, got {self.few_shot!r}.")
        checks = {
            "few_shot_max_rows_per_class": self.few_shot_max_rows_per_class > 0,
            "few_shot_body_epochs": self.few_shot_body_epochs > 0,
            "few_shot_batch_size": self.few_shot_batch_size >= 2,
            "few_shot_learning_rate": self.few_shot_learning_rate > 0,
            "few_shot_head_c": self.few_shot_head_c > 0,
            "few_shot_temperature": self.few_shot_temperature > 0,
            "few_shot_body_mix": 0 <= self.few_shot_body_mix <= 1,
        }
        if self.few_shot_template_copies < 0:
            raise ConfigError(f"few_shot_template_copies must be >= 0, got {self.few_shot_template_copies}.")
        if str(self.few_shot_label_template).strip().lower() in ("", "none", "null"):
            self.few_shot_label_template = None
        template = self.few_shot_label_template
        if template is not None and (template.count("{}") != 1 or "{" in template.replace("{}", "")):
            raise ConfigError(
                f"few_shot_label_template must hold one {{}} for the label name and no other braces, got {template!r}."
            )
        if self.few_shot_loss not in ("cosine", "supcon"):
            raise ConfigError(f"few_shot_loss must be cosine or supcon, got {self.few_shot_loss!r}.")
        limits = {"few_shot_batch_size": ">= 2 (a pair)", "few_shot_body_mix": "in [0, 1]"}
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ConfigError(f"{name} must be {limits.get(name, '> 0')}, got {value}.")
