"""hf_transfer: transfer learning for Hugging Face models (freezing, adapters, distillation, weight interpolation)."""

from __future__ import annotations

import warnings
from importlib import metadata

__version__ = "0.1.0"


def _warn_if_download_accelerator_installed() -> None:
    # The unrelated `hf-transfer` wheel (a download accelerator) also installs a package named `hf_transfer`;
    # if both are installed, one shadows the other depending on install order.
    try:
        metadata.distribution("hf-transfer")
    except metadata.PackageNotFoundError:
        return
    warnings.warn(
        "The `hf-transfer` download-accelerator wheel is installed and also provides a package named "
        "`hf_transfer`; it can shadow this one. huggingface_hub >= 1.0 no longer uses it: "
        "`pip uninstall hf-transfer`, then reinstall hf-transfer-learning.",
        stacklevel=2,
    )


_warn_if_download_accelerator_installed()

_LAZY = {
    "TransferTrainer": "train.trainer",
    "DistillationTrainer": "distill.trainer",
    "DistillationArguments": "distill.arguments",
    "TransferTrainingArguments": "train.arguments",
    "ModelArguments": "core.arguments",
    "DataArguments": "core.arguments",
    "discover_layers": "core.layers",
}


def __getattr__(name: str):
    # Keep `import hf_transfer` (and so `hf-transfer --help`) light: torch and transformers load on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'hf_transfer' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
