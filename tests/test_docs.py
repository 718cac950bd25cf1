"""The docs match the code: README's option table names every `label` option, and every relative link in the
README and docs/ points at a file that exists."""

import re
from pathlib import Path

from icm_lite.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def test_the_readme_table_names_every_label_option():
    names = {o for p in main.commands["label"].params for o in p.opts if o.startswith("--")}
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| group | options |"):]
    table = table[: table.index("\n\n")]
    assert sorted(n for n in names if f"`{n}`" not in table and f"`{n} " not in table) == []


def test_relative_links_in_the_docs_resolve():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+:", target) and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []
