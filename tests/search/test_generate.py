"""`hypersweep generate`: text from a trained language model, images from a trained
generator, on real stores."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from hypersweep.cli.app import app
from tests.conftest import read_only_view

runner = CliRunner()
LINE = "the cat sat on the mat\n"


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def best_run(stores, config: dict, write_config) -> str:
    res = invoke("run", str(write_config(config)), *stores.cli_args())
    assert res.exit_code == 0, res.output
    return json.loads(invoke("best", config["study"], "--json", "--storage",
                             stores.optuna_url).output)[0]["mlflow_run_id"]


def objective(**search) -> dict:
    return {"trials": 1, "objective": {"metric": "val_loss", "direction": "minimize"}, **search}


def test_a_language_model_continues_a_prompt(tmp_path, stores, write_config):
    """A text of one line over and over: beam search continues a prompt with the
    line; sampling draws the same texts for a seed, others for another."""
    (tmp_path / "cat.txt").write_text(LINE * 300)
    config = {"study": "cat", "model": "char_lm",
              "data": {"name": "text", "options": {"path": str(tmp_path / "cat.txt"),
                                                   "window": 32}},
              "params": {"epochs": 4, "lr": 0.01}, "search": objective(),
              "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    gen = ["generate", run_id, "--tracking-uri", stores.mlflow_uri]

    res = invoke(*gen, "--prompt", "the cat ", "--beam", "3", "--length", "37")
    assert res.exit_code == 0 and res.output == "the cat " + (LINE * 3)[8:45] + "\n", res.output

    res = invoke(*gen, "--prompt", "the ", "--length", "30", "-n", "3", "--seed", "1")
    texts = res.output[:-1].split("\n---\n")
    assert res.exit_code == 0 and len(texts) == 3, res.output
    assert all(t.startswith("the ") and len(t) == 34 for t in texts)
    assert set("".join(texts)) <= set(LINE)
    assert invoke(*gen, "--prompt", "the ", "--length", "30", "-n", "3", "--seed", "1").output \
        == res.output
    assert invoke(*gen, "--prompt", "the ", "--length", "30", "-n", "3", "--seed", "2").output \
        != res.output
    out = tmp_path / "texts.txt"
    res2 = invoke(*gen, "--prompt", "the ", "--length", "30", "-n", "3", "--seed", "1",
                  "-o", str(out))
    assert res2.exit_code == 0 and out.read_text() == res.output
    assert res2.output == f"3 texts of char_lm (trial 0 of study cat) -> {out}\n"
    # no prompt: from a new line
    res = invoke(*gen, "--length", "5")
    assert res.exit_code == 0 and res.output.startswith("\n") and len(res.output) == 7

    # one line each, exit 2, nothing written
    bad = tmp_path / "bad.txt"
    (tmp_path / "a.txt").mkdir()
    for args, error in (
            (["--prompt", "dog"], "--prompt: 'd', 'g' not in the model's vocabulary of 11 "
                                  "characters: '\\n acehmnost'"),
            (["--beam", "3", "-n", "2"], "--beam: gives one text, the most probable; -n 2 asks "
                                         "for more (sample them at a --temperature instead)"),
            (["--temperature", "0"], "--temperature: must be a finite number above 0, got 0.0"),
            (["--temperature", "inf"], "--temperature: must be a finite number above 0, got inf"),
            (["--beam", "3", "--temperature", "0.5"], "--temperature: applies to sampling; "
                                                      "--beam finds the most probable text, "
                                                      "which no temperature changes"),
            (["--beam", "100000000"], "--beam: at most 1,000, got 100,000,000"),
            (["-n", "100000000"], "-n: at most 10,000, got 100,000,000"),
            (["--length", "100000000"], "--length: at most 100,000, got 100,000,000"),
            (["--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1, got -1"),
            (["-o", str(tmp_path / "a.txt")], f"--output: {tmp_path / 'a.txt'} is a directory; "
                                              "give a file name"),
            (["--length", "0"], "--length: must be at least 1, got 0"),
            (["--prompt", ""], "--prompt: empty; give at least one character the model knows"),
            (["-o", str(tmp_path / "bad.png")], "--output: bad.png: char_lm makes texts; write "
                                                "FILE.txt"),
            (["-o", str(tmp_path / "bad.json")], "--output: bad.json: the file must end in .txt "
                                                 "(texts), .png or .npz (images)")):
        res = invoke(*gen, *args, "-o", str(bad)) if "-o" not in args else invoke(*gen, *args)
        assert res.exit_code == 2 and res.output == f"error: {error}\n", (args, res.output)
        assert not bad.exists() and not (tmp_path / "bad.png").exists()
    # a file that cannot be replaced is left as it was, nothing beside it
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "old.txt").write_text("kept")
    hypersweep = str(Path(sys.executable).with_name("hypersweep"))
    with read_only_view(tmp_path / "ro", [hypersweep, *gen, "--length", "3", "-o",
                                          str(tmp_path / "ro" / "old.txt")]) as command:
        done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith(
        f"error: --output: cannot write {tmp_path / 'ro' / 'old.txt'}: "), done.stderr
    assert [p.name for p in (tmp_path / "ro").iterdir()] == ["old.txt"]
    assert (tmp_path / "ro" / "old.txt").read_text() == "kept"
    # a language model has no predictions on samples of its own
    res = invoke("predict", run_id, "-i", str(tmp_path / "cat.txt"), "-o",
                 str(tmp_path / "out.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: SOURCE: the model's task is language_modelling; predict takes a classifier's, a "
        "regression's, an autoencoder's, a VAE's or a seq2seq model's (hypersweep generate "
        "samples a language model or a generator)\n")


def test_a_generator_draws_images_as_a_grid_or_an_array(tmp_path, stores, write_config):
    from PIL import Image
    config = {"study": "gan", "model": "gan", "params": {"epochs": 1}, "search": objective(),
              "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    gen = ["generate", run_id, "--tracking-uri", stores.mlflow_uri]
    res = invoke(*gen, "-n", "10", "-o", str(tmp_path / "a.npz"))
    assert res.exit_code == 0, res.output
    assert res.output == f"10 samples of gan (trial 0 of study gan) -> {tmp_path / 'a.npz'}\n"
    with np.load(tmp_path / "a.npz") as a:
        x = a["x"]
    assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32 and 0 <= x.min() < x.max() <= 1
    assert x.std(axis=0).mean() > 1e-3          # ten samples, not one ten times
    with np.load(tmp_path / "a.npz") as again:
        assert invoke(*gen, "-n", "10", "-o", str(tmp_path / "b.npz")).exit_code == 0
        with np.load(tmp_path / "b.npz") as b:
            assert np.array_equal(again["x"], b["x"])
    assert invoke(*gen, "-n", "10", "--seed", "3", "-o", str(tmp_path / "c.npz")).exit_code == 0
    with np.load(tmp_path / "c.npz") as c:
        assert not np.array_equal(x, c["x"])
    res = invoke(*gen, "-o", str(tmp_path / "grid.png"))     # 64 by default
    assert res.exit_code == 0 and res.output.startswith("64 samples of gan"), res.output
    with Image.open(tmp_path / "grid.png") as png:
        assert png.format == "PNG" and png.width > 100 and png.height > 100

    bad = tmp_path / "bad.png"
    for args, error in (
            ([], "--output: needed: gan makes images; write them to FILE.png (a grid) or "
                 "FILE.npz (the array x)"),
            (["--prompt", "a", "-o", str(bad)], "--prompt: for a language model's text; gan "
                                                "makes images"),
            (["-o", str(tmp_path / "bad.txt")], "--output: bad.txt: gan makes images; write "
                                                "FILE.png or FILE.npz"),
            (["-n", "0", "-o", str(bad)], "-n: must be at least 1, got 0"),
            (["-n", "2000", "-o", str(bad)], "-n: a grid of 2,000 images is too large to read; "
                                             "at most 1,024 in FILE.png, or write FILE.npz"),
            (["-n", "10000000", "-o", str(tmp_path / "bad.npz")],
             "-n: at most 1,562,500 samples of (1, 8, 8) (100,000,000 values, held in memory "
             "before they are written), got 10,000,000"),
            (["--temperature", "2", "-o", str(bad)], "--temperature: for a language model's "
                                                     "text; gan makes images"),
            (["-o", str(tmp_path / "nowhere" / "a.png")], f"--output: {tmp_path / 'nowhere'}"
                                                          f"/a.png: no directory "
                                                          f"{tmp_path / 'nowhere'}")):
        res = invoke(*gen, *args)
        assert res.exit_code == 2 and res.output == f"error: {error}\n", (args, res.output)
        assert not bad.exists() and not (tmp_path / "bad.txt").exists()
    # Its task, generation, is a VAE's too, which predict takes: said as what it is
    res = invoke("predict", run_id, "-i", str(tmp_path / "a.npz"), "-o",
                 str(tmp_path / "out.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: SOURCE: the model is a GAN's generator, which takes no samples; predict takes "
        "a classifier's, a regression's, an autoencoder's, a VAE's or a seq2seq model's "
        "(hypersweep generate samples a language model or a generator)\n"), res.output


def test_a_model_that_makes_no_samples_is_refused(tmp_path, stores, write_config):
    """An autoencoder reconstructs; generate points to predict."""
    config = {"study": "ae", "model": "autoencoder", "params": {"epochs": 1},
              "search": objective(), "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    res = invoke("generate", run_id, "-o", str(tmp_path / "a.png"),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: SOURCE: the model's task is reconstruction; generate samples a language model "
        "(char_lm) or a generator (gan, vae); hypersweep predict runs the others on new "
        "samples\n")
    assert not (tmp_path / "a.png").exists()


def test_a_vae_draws_samples_and_scores_reconstructions(tmp_path, stores, write_config):
    config = {"study": "vae", "model": "vae", "params": {"epochs": 1}, "search": objective(),
              "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    res = invoke("generate", run_id, "-n", "3", "-o", str(tmp_path / "v.npz"),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "v.npz") as v:
        assert v["x"].shape == (3, 1, 8, 8)
        np.savez(tmp_path / "x.npz", x=v["x"])
    res = invoke("predict", run_id, "-i", str(tmp_path / "x.npz"), "-o", str(tmp_path / "e.csv"),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0] == "mse,bce" and len(lines) == 4
