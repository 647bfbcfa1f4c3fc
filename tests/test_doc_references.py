"""Every docs file the source cites is in the repo, and every decision file is in the decisions index."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_docs_path_the_code_cites_exists():
    cited = {}
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]:
        for ref in re.findall(r"docs/[\w./-]+\.(?:md|json)", path.read_text()):
            cited.setdefault(ref, path.relative_to(ROOT))
    assert len(cited) > 10
    missing = {ref: str(where) for ref, where in cited.items() if not (ROOT / ref).is_file()}
    assert not missing, missing


def test_every_decision_is_in_the_index_and_names_how_it_is_measured():
    folder = ROOT / "docs" / "decisions"
    index = (folder / "README.md").read_text()
    for decision in sorted(folder.glob("*.md")):
        if decision.name == "README.md":
            continue
        assert f"({decision.name})" in index, decision.name
        assert "**Measured by.**" in decision.read_text(), decision.name
