"""A real browser on the MLflow UI of a finished study: headless Chromium renders
the experiment page served by `hypersweep ui`, and the page lists the parent run
and its trial runs. A screenshot is kept in test-artifacts/."""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from tests.conftest import ROOT, small_config
from tests.servers import free_port, serving

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"


def chromium(url: str, *action: str) -> str:
    """Load `url`, let the single-page app fetch and render (virtual time), act.
    A fresh profile each time: MLflow keeps UI state in the browser's storage."""
    with tempfile.TemporaryDirectory(prefix="hypersweep-chromium-") as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--window-size=1600,1000", "--virtual-time-budget=30000", *action, url],
            capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs "
                                             "Debian's chromium)")
def test_experiment_page_lists_the_study_and_its_trials(stores, write_config):
    res = CliRunner().invoke(app, ["run", str(write_config(small_config("browsed", stores,
                                                                        trials=3)))])
    assert res.exit_code == 0, res.output
    exp = MlflowClient(tracking_uri=stores.mlflow_uri).get_experiment_by_name("browsed")

    port = free_port()
    argv = [sys.executable, "-m", "hypersweep.cli.app", "ui", "--tracking-uri", stores.mlflow_uri,
            "--port", str(port)]
    with serving(argv, f"http://127.0.0.1:{port}/health"):
        runs = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
        nested = text_of(chromium(runs, "--dump-dom"))
        # Sorted by name the table lists every run flat, parent and trials alike.
        by_name = f"{runs}?orderByKey=attributes.run_name&orderByAsc=true"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "mlflow-ui-experiment.png"
        shot.unlink(missing_ok=True)
        flat = text_of(chromium(by_name, "--dump-dom", f"--screenshot={shot}"))
    # Default view: the parent run, its three trials nested (collapsed) under it.
    assert "browsed" in nested and "4 matching runs" in nested
    assert "trial-0000" not in nested
    names = re.findall(r"\b(browsed|trial-\d{4})\b", flat[flat.index("Run Name"):])
    assert names == ["browsed", "trial-0000", "trial-0001", "trial-0002"]
    assert shot.stat().st_size > 10_000


def text_of(dom: str) -> str:
    """The page's visible text: markup, scripts and styles stripped."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))
