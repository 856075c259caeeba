"""Packaging: the entry points, the files shipped inside the package, and the name-clash warning."""

import importlib
import json
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import hf_transfer
from hf_transfer.core.metrics import METRICS_DIR
from hf_transfer.outputs.cards import template_path


def test_python_m_and_console_script_are_the_same_program():
    proc = subprocess.run([sys.executable, "-m", "hf_transfer", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "train" in proc.stdout and "evaluate" in proc.stdout
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts["hf-transfer"] == "hf_transfer.cli:main"


def test_the_wheel_ships_every_module_template_and_metric_module(tmp_path):
    """Built as pip builds it: a subpackage, template or metric module left out of pyproject's lists fails here."""
    import zipfile

    root = Path(hf_transfer.__file__).resolve().parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("hf_transfer_learning-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(root).as_posix() for p in (root / "hf_transfer").rglob("*.py")}
    assert sources - shipped == set()
    assert "hf_transfer/model_cards/" + template_path().name in shipped
    metric_modules = {p.relative_to(root).as_posix() for p in METRICS_DIR.glob("*/*.py")}
    assert metric_modules and metric_modules <= shipped


def test_warns_when_the_download_accelerator_wheel_is_installed(monkeypatch):
    real = metadata.distribution

    def fake(name):
        if name == "hf-transfer":
            return object()
        return real(name)

    monkeypatch.setattr(metadata, "distribution", fake)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(hf_transfer)
    assert any("pip uninstall hf-transfer" in str(w.message) for w in caught)
    monkeypatch.setattr(metadata, "distribution", real)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(hf_transfer)
    assert not any("hf-transfer" in str(w.message) for w in caught)


def test_half_precision_checkpoint_loads_with_fp32_master_weights(tmp_path):
    """An fp16 checkpoint (common on the Hub) must train with fp32 weights: transformers 5 would keep it in fp16."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from hf_transfer.core.models import load_classifier

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    BertForSequenceClassification(config).half().save_pretrained(tmp_path)
    model = load_classifier(str(tmp_path), config)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_loading_a_base_says_a_new_head_at_info_and_a_random_body_weight_as_a_warning(tmp_path, caplog, capfd):
    """transformers' LOAD REPORT table (ANSI bold codes in a log file) was printed on every training for the new head
    that adapting a base always brings. The new head is now said at info level; body weights missing from the
    checkpoint, which do start random (a base saved without its pooler), stay a warning."""
    import logging

    from transformers import BertConfig, BertModel

    from hf_transfer.core.models import load_classifier

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=3
    )
    BertModel(config).save_pretrained(tmp_path / "base")
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "no_pooler")
    with caplog.at_level(logging.INFO, logger="hf_transfer"):
        load_classifier(str(tmp_path / "base"), config)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("hf_transfer")]
    assert said == [(logging.INFO, "a new classification head (3 labels) starts from random weights: "
                     "classifier.bias, classifier.weight.")]  # fmt: skip
    assert "LOAD REPORT" not in "".join(capfd.readouterr())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hf_transfer"):
        load_classifier(str(tmp_path / "no_pooler"), config, head_from_elsewhere=True)
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("hf_transfer")]
    assert len(said) == 1 and said[0][0] == logging.WARNING
    assert said[0][1].startswith("2 weight(s) of BertForSequenceClassification's body are not in the checkpoint of")
    assert "start from random values: bert.pooler.dense.bias, bert.pooler.dense.weight." in said[0][1]


def test_no_script_hides_an_installed_module(tmp_path):
    # `python scripts/X.py` puts scripts/ first on sys.path, so a script named like a library (evaluate.py) would be
    # imported in its place by everything the script runs. The check runs in a fresh, isolated interpreter outside the
    # checkout: this test process's sys.path has been changed by what the suite imported (onnxruntime.quantization
    # appends onnxruntime/transformers, which holds a benchmark.py), and that is not what a script starts with.
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    names = sorted(p.stem for p in scripts.glob("*.py"))
    assert "train" in names and "evaluate_model" in names
    probe = (
        "import importlib.util, json, sys\n"
        "found = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    spec = importlib.util.find_spec(name)\n"
        # origin None: a bare folder (a namespace package, such as an output folder), which hides nothing
        "    if spec is not None and spec.origin is not None:\n"
        "        found[name] = spec.origin\n"
        "print(json.dumps(found))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", probe, json.dumps([*names, "evaluate"])],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert "evaluate" in found  # the check sees the library the old scripts/evaluate.py hid
    assert {n: found[n] for n in names if n in found} == {}


def test_the_evaluate_script_runs_as_a_script(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "evaluate_model.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--validation_file" in proc.stdout, proc.stderr[-1000:]


def test_a_checkout_renders_its_own_card_template(monkeypatch):
    # template_path() looked for the checkout's template one folder too deep (hf_transfer/model_cards), so it always
    # fell back to the installed copy: a second git worktree rendered the first checkout's template.
    from hf_transfer.outputs import cards

    def no_installed_copy(package):
        raise AssertionError(f"the installed copy of {package} was used, not the checkout's template")

    monkeypatch.setattr(cards.resources, "files", no_installed_copy)
    checkout = Path(hf_transfer.__file__).resolve().parents[1]
    assert template_path() == checkout / "model_cards" / cards.TEMPLATE


def test_card_and_push_do_not_import_scikit_learn():
    """`hf-transfer card DIR` took 2 s for 0.24 s of work: scikit-learn (1.3 s) was imported at the top of the metrics
    module for a confusion matrix that card and push never compute."""
    code = "import sys, hf_transfer.outputs.commands; print(sorted(m for m in sys.modules if m.startswith('sklearn')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
