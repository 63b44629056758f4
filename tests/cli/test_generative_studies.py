"""The generative studies cover every family and variant (tests/cli/test_studies.py
validates and runs each of them)."""
from __future__ import annotations

import yaml

from tests.conftest import STUDIES

GENERATIVE_STUDIES = sorted(p.name for pattern in ("autoencoder_*.yaml", "vae_*.yaml", "gan_*.yaml")
                            for p in STUDIES.glob(pattern))


def test_every_generative_family_has_studies():
    families = {name.split("_")[0] for name in GENERATIVE_STUDIES}
    assert families == {"autoencoder", "vae", "gan"}
    variants = {yaml.safe_load((STUDIES / n).read_text())["params"].get("variant")
                for n in GENERATIVE_STUDIES if n.startswith("autoencoder")}
    assert variants == {"undercomplete", "sparse", "denoising", "contractive"}
    archs = {yaml.safe_load((STUDIES / n).read_text())["params"].get("arch")
             for n in GENERATIVE_STUDIES if n.startswith("gan")}
    assert archs == {"mlp", "dcgan"}
