"""The method registry and the model table are the only tables of names: every place that
lists methods or models says the same, and the bash scripts keep no copy of their own."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from models.seg_models import SEG_MODELS
from tests.conftest import REPO
from training.methods import METHODS, every_method

# Documentation tables of the form `| name, name | ACR, ACR | ... |`.
DOC_TABLES = ("training/methods/__init__.py", "docs/METHOD.md")


def documented_pairs(text: str) -> set[tuple[str, str]]:
    pairs = set()
    # Acronyms start upper-case and may hold lower-case letters and '+' (FixMatch, UniMatch+QAR).
    table_row = r"^\| *([a-z_, ]+?) *\| *([A-Z][A-Za-z+\-, ]*?) *\|"
    for names, acronyms in re.findall(table_row, text, re.M):
        n, a = [x.strip() for x in names.split(",")], [x.strip() for x in acronyms.split(",")]
        if len(n) == len(a):
            pairs |= set(zip(n, a))
    return pairs


@pytest.mark.parametrize("doc", DOC_TABLES)
def test_documented_method_tables_match_the_registry(doc):
    registry = {(name, cls.acronym) for name, cls in every_method().items()}
    assert documented_pairs((REPO / doc).read_text()) == registry


def test_bash_scripts_keep_no_list_of_method_or_model_names():
    """A setting may name one model (the demo profile's), never a list of them."""
    names = set(every_method()) | {spec.name for spec in SEG_MODELS.values()}
    for script in REPO.glob("*.sh"):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            named = set(re.findall(r"[a-z_]+", line.split("#", 1)[0])) & names
            assert len(named) <= 1, f"{script.name}:{number} lists {sorted(named)}: {line}"


def test_the_listings_scripts_read_are_the_tables():
    def listing(module: str) -> list[list[str]]:
        out = subprocess.run(
            [sys.executable, "-m", module, "--list"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line.split("\t") for line in out.stdout.splitlines()]

    methods = listing("training.methods")
    assert [(r[0], r[1]) for r in methods] == [(n, c.acronym) for n, c in METHODS.items()]
    assert {r[0] for r in methods if r[2] == "1"} == {
        n for n, c in METHODS.items() if c.uses_quality
    }
    models = listing("models.seg_models")
    assert [(r[0], r[1]) for r in models] == [(s.name, s.acronym) for s in SEG_MODELS.values()]
