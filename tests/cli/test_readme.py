"""The README's config examples are what a user pastes: each YAML block reads as a
study config does, and a whole config in one is a valid one."""
from __future__ import annotations

import re

import pytest

from hypersweep.search.config import load_yaml, parse_config
from tests.conftest import ROOT

BLOCKS = re.findall(r"^```yaml\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_yaml_examples():
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_yaml_example_reads_as_a_study_config(block):
    """A key given twice in one mapping (the pruner example set `pruner:` twice) is
    an error the config reader gives; a whole config passes its schema."""
    raw = load_yaml(block)
    assert isinstance(raw, dict) and raw, block
    if {"study", "model"} <= raw.keys():
        parse_config(raw)
