"""The README as a reader meets it in a fresh clone: every local link and picture resolves to a file the repository
tracks, every in-page link to a heading, and the test command it gives is the one CI runs."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_local_link_resolves_to_a_tracked_file_or_a_heading():
    text = (REPO / "README.md").read_text()
    tracked = set(subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split())
    anchors = {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        if target.startswith("#"):
            if target[1:] not in anchors:
                broken.append(target)
            continue
        path = target.split("#")[0]
        if path not in tracked:
            broken.append(target)
    assert not broken, f"README links that a fresh clone cannot follow: {broken}"


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = next(line for line in ci.splitlines() if "pytest" in line).strip()
    assert command in readme
