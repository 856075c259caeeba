"""The package's shape: one folder per capability, imports that run one way (cli → command → train/adapters/outputs →
core → errors), no cycle (lazy imports included), modules readable in one sitting, trainers that override few hooks."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "hf_transfer"
# A module may import from its own folder or from a folder of lower rank, never from a higher or equal one.
RANK = {
    "errors": 0,
    "core": 1,
    "adapters": 2,
    "outputs": 2,
    "train": 3,
    "distill": 4,
    "merge": 4,
    "evaluation": 4,
    "predict": 4,
    "export": 4,
    "search": 5,
    "cli": 6,
    "__main__": 7,
    "__init__": 7,
}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "metric_modules" in path.parts:  # evaluate scripts, loaded by path; they import no hf_transfer code
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """Every hf_transfer module `name` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    known = modules()
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target.startswith("hf_transfer") and target != name:
            resolved.add(target)
    return resolved


def folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_run_one_way():
    upward = []
    for name, path in modules().items():
        for target in imports(name, path):
            if target == "hf_transfer":  # the package itself (its __version__)
                continue
            src, dst = folder(name), folder(target)
            if src != dst and RANK[dst] >= RANK[src]:
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the layer order: " + ", ".join(sorted(upward))


def test_no_import_cycles():
    graph = {name: imports(name, path) - {"hf_transfer"} for name, path in modules().items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, trail):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(trail[trail.index(nxt) :] + [nxt])
                return True
            if nxt not in state and visit(nxt, trail + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_every_folder_is_known_and_every_module_is_short():
    assert {folder(name) for name in modules()} <= set(RANK)
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_trainers_override_few_hooks():
    from transformers import Trainer

    api = {name for name in dir(Trainer) if not name.startswith("__")}
    # TransferTrainer: its loss, and Trainer's count of the items that loss is divided by (class weights, rows
    # without labels); DistillationTrainer adds only `log` (its loss terms). Any other trainer: two hooks at most.
    allowed = {
        "TransferTrainer": {"compute_loss", "_get_num_items_in_batch"},
        "DistillationTrainer": {"compute_loss", "log"},
    }
    trainers = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "").endswith("Trainer") for b in node.bases):
                trainers.append(node.name)
                defined = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} & api
                if node.name in allowed:
                    assert defined <= allowed[node.name], f"{node.name} overrides {sorted(defined)}"
                else:
                    assert len(defined) <= 2, f"{node.name} overrides {sorted(defined)}"
    assert {"TransferTrainer", "DistillationTrainer"} <= set(trainers)
