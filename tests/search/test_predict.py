"""`hypersweep predict` and `load_trained`: a trained model back from MLflow, and
its predictions on new samples, on real stores."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.errors import UserError
from hypersweep.models.tables import _encode
from hypersweep.search.predict import load_trained
from tests.conftest import ROOT, study_runs

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def houses(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"area": rng.normal(80, 20, n).round(1),
                          "town": rng.choice(["north", "south", "east"], n)})
    frame["price"] = 3 * frame["area"] + frame["town"].map({"north": 100, "south": 0,
                                                            "east": 50}) + rng.normal(0, 5, n)
    frame["band"] = np.where(frame["price"] > frame["price"].median(), "high", "low")
    return frame


def run_study(tmp_path, stores, name: str, target: str, features: str, **search) -> str:
    """A serial study on houses.csv; the best trial's run id."""
    houses().to_csv(tmp_path / "houses.csv", index=False)
    config = {"study": name, "model": "mlp",
              "data": {"name": "csv", "options": {"path": str(tmp_path / "houses.csv"),
                                                  "target": target, "features": features}},
              "params": {"epochs": 40, "width": 16, "lr": 0.01},
              "search": {"strategy": "random", "trials": 2, **search},
              "resources": {"executor": "serial"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    res = invoke("run", str(path), *stores.cli_args())
    assert res.exit_code == 0, res.output
    res = invoke("best", name, "--json", "--storage", stores.optuna_url)
    return json.loads(res.output)[0]["mlflow_run_id"]


def test_a_classifier_predicts_new_rows_as_the_training_file_made_them(tmp_path, stores):
    run_id = run_study(tmp_path, stores, "bands", "band", "area, town")
    new = houses(n=50, seed=1)          # rows the study never saw
    new.drop(columns=["band"]).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "predicted.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.csv"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    number = load_trained(run_id, stores.mlflow_uri).spec.trial_number
    assert res.output.strip() == f"50 predictions of mlp (trial {number} of study bands) -> {out}"
    predicted = pd.read_csv(out)
    assert list(predicted.columns) == ["prediction", "probability_high", "probability_low"]
    assert predicted[["probability_high", "probability_low"]].sum(axis=1).round(5).eq(1).all()
    assert (predicted["prediction"] == new["band"]).mean() >= 0.8     # learnt, not guessed
    # compressed, as training reads one too
    new.drop(columns=["band"]).to_csv(tmp_path / "new.csv.gz", index=False)
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.csv.gz"), "-o",
                 str(tmp_path / "gz.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "gz.csv").equals(predicted)

    # The inputs are the training file's: its means, stds and categories (not the new
    # rows' own); the scores, the model's own on them.
    trained = load_trained(run_id, stores.mlflow_uri)
    train = houses()
    encoded, _, layout = _encode(train, ["area", "town"], [])
    assert trained.data["inputs"] == layout
    standardised = (new["area"] - train["area"].mean()) / train["area"].std(ddof=0)
    x = np.column_stack([standardised, *(new["town"] == t for t in ("east", "north", "south"))])
    with torch.no_grad():
        scores = trained.model(torch.tensor(x, dtype=torch.float32)).numpy()
    assert list(predicted["prediction"]) == [["high", "low"][i] for i in scores.argmax(axis=1)]
    assert predicted["probability_high"].to_numpy() == pytest.approx(
        torch.softmax(torch.tensor(scores), dim=1)[:, 0].numpy(), abs=1e-6)
    # a decimal comma in a file whose training file had a point: the cell is named
    (tmp_path / "comma.csv").write_text('area,town\n50,north\n"61,5",south\n')
    res = invoke("predict", run_id, "-i", str(tmp_path / "comma.csv"), "-o",
                 str(tmp_path / "comma_out.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: --input: comma.csv: column 'area' holds '61,5' in row 2 (line 3), not a number, "
        "as the column was in the training file (written with the decimal mark ','; the "
        "training file's is '.')\n") and not (tmp_path / "comma_out.csv").exists()


def test_a_regression_predicts_in_the_target_s_units_and_final_models_by_registry(
        tmp_path, stores):
    run_study(tmp_path, stores, "prices", "price", "area, town",
              objective={"metric": "val_mse", "direction": "minimize"})
    res = invoke("final", "prices", "--storage", stores.optuna_url)
    assert res.exit_code == 0, res.output
    new = houses(n=40, seed=2)
    new.drop(columns=["price", "band"]).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "prices.csv"
    res = invoke("predict", "models:/prices/1", "-i", str(tmp_path / "new.csv"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    assert "(the final model of study prices)" in res.output
    predicted = pd.read_csv(out)["prediction"]
    # dollars, not the standardised units it trained on (std about 63 here)
    assert abs(predicted.mean() - new["price"].mean()) < 15
    assert np.sqrt(((predicted - new["price"]) ** 2).mean()) < 20
    _, children = study_runs(stores.mlflow_uri, "prices")
    final = load_trained("models:/prices/1", stores.mlflow_uri)
    assert final.final and final.run_id not in {c.info.run_id for c in children}
    # the latest version, and one by alias, name the same run
    from mlflow.tracking import MlflowClient
    MlflowClient(stores.mlflow_uri).set_registered_model_alias("prices", "champion", "1")
    for uri in ("models:/prices/latest", "models:/prices@champion"):
        assert load_trained(uri, stores.mlflow_uri).run_id == final.run_id, uri
    for uri, error in (("models:/prices@nobody", "error: SOURCE: no registered model version "),
                       ("models:/prices/first", "error: SOURCE: models:/prices/first: give a "
                                                "registered model's version")):
        res = invoke("predict", uri, "-i", str(tmp_path / "new.csv"), "-o", str(out),
                     "--tracking-uri", stores.mlflow_uri)
        assert res.exit_code == 2 and res.output.startswith(error), res.output
    res = invoke("predict", "models:/prices/1", "-i", str(tmp_path / "new.csv"), "-o", str(out),
                 "--x", "rows", "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output.startswith(
        "error: --x: rows: names an .npz archive's array; new.csv is a CSV file"), res.output


def test_an_npz_archive_s_array_is_read_as_the_training_one(tmp_path, stores, write_config):
    """Digits as an .npz archive of uint8 images: new images are scaled as the
    training ones were (divided by 255)."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = (digits.images * 255 / 16).astype(np.uint8)
    np.savez(tmp_path / "digits.npz", x=images[:1200], y=digits.target[:1200])
    config = {"study": "digits-npz", "model": "mlp",
              "data": {"name": "npz", "options": {"path": str(tmp_path / "digits.npz")}},
              "params": {"epochs": 8, "lr": 0.01},
              "search": {"strategy": "random", "trials": 1},
              "resources": {"executor": "serial"}}
    res = invoke("run", str(write_config(config)), *stores.cli_args())
    assert res.exit_code == 0, res.output
    run_id = json.loads(invoke("best", "digits-npz", "--json", "--storage",
                               stores.optuna_url).output)[0]["mlflow_run_id"]
    holes = images[1200:1203].astype(np.float32)
    holes[1, 2, 2] = np.nan
    np.savez(tmp_path / "new.npz", images=images[1200:], holes=holes, none=images[:0],
             small=images[:3, :7, :7])
    out = tmp_path / "digits.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.npz"), "--x", "images", "-o",
                 str(out), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    predicted = pd.read_csv(out)["prediction"]
    assert len(predicted) == len(images) - 1200
    assert (predicted.to_numpy() == digits.target[1200:]).mean() > 0.5      # chance: 0.1
    trained = load_trained(run_id, stores.mlflow_uri)
    scaled = images[1200:, None].astype(np.float32) / 255       # (n, 1, 8, 8), as trained
    assert list(predicted) == list(trained.outputs(scaled).argmax(axis=1))

    # one line each, exit 2, nothing written
    bad = tmp_path / "bad.csv"
    for args, error in (
            (["--x", "pixels"], "error: --x: no array 'pixels' in new.npz; it holds images, "
                                "holes, none, small"),
            (["--x", "holes"], f"error: --input: array 'holes' in {tmp_path / 'new.npz'} holds "
                               "NaN in sample 1 (counted from 0; 1 sample in all)"),
            (["--x", "none"], f"error: --input: array 'none' in {tmp_path / 'new.npz'} holds "
                              "no samples (its shape is (0, 8, 8))"),
            # as the file holds them: it said (1, 7, 7), the shape made of them
            (["--x", "small"], "error: --input: array 'small' in new.npz holds samples of shape "
                               "(7, 7); the model takes (1, 8, 8), as the study's data"),
            (["-i", str(tmp_path / "missing.npz")], "error: --input: "),
            (["-o", str(tmp_path / "out.json")], "error: --output: out.json: the file must end "
                                                 "in .csv"),
            (["SOURCE", "0" * 32], "error: SOURCE: no run 00000000000000000000000000000000 in ")):
        argv = ["predict", run_id, "-i", str(tmp_path / "new.npz"), "--x", "images", "-o",
                str(bad), "--tracking-uri", stores.mlflow_uri]
        if args[0] == "SOURCE":
            argv[1] = args[1]
        else:
            for flag, value in zip(args[::2], args[1::2]):
                argv[argv.index(flag) + 1] = value
        res = invoke(*argv)
        assert res.exit_code == 2 and res.output.startswith(error), (args, res.output)
        assert len(res.output.strip().splitlines()) == 1 and not bad.exists()


def best_run(stores, config: dict, write_config) -> str:
    """Run a study of one config; its best trial's run id."""
    res = invoke("run", str(write_config(config)), *stores.cli_args())
    assert res.exit_code == 0, res.output
    return json.loads(invoke("best", config["study"], "--json", "--storage",
                             stores.optuna_url).output)[0]["mlflow_run_id"]


def test_an_autoencoder_scores_each_sample_by_its_reconstruction_error(
        tmp_path, stores, write_config):
    """The error per sample, as the trials' val_mse and val_bce average it: digits
    it learnt to reconstruct score lower than noise (what anomaly detection reads)."""
    from sklearn.datasets import load_digits
    config = {"study": "ae", "model": "autoencoder", "params": {"epochs": 10, "lr": 0.01},
              "search": {"trials": 1, "objective": {"metric": "val_loss", "direction": "minimize"}},
              "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    digits = (load_digits().images[:40] / 16).astype(np.float32)
    noise = np.random.default_rng(0).random((10, 8, 8), dtype=np.float32)
    np.savez(tmp_path / "new.npz", x=np.concatenate([digits, noise]), raw=digits * 16)
    out = tmp_path / "errors.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.npz"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    errors = pd.read_csv(out)
    assert list(errors.columns) == ["mse", "bce"] and len(errors) == 50
    trained = load_trained(run_id, stores.mlflow_uri)
    x = torch.as_tensor(np.concatenate([digits, noise]))[:, None]
    with torch.no_grad():
        recon = trained.model(x)
    assert np.allclose(errors["mse"], ((recon - x) ** 2).mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    bce = torch.nn.functional.binary_cross_entropy(recon, x, reduction="none")
    assert np.allclose(errors["bce"], bce.mean(dim=(1, 2, 3)).numpy(), rtol=1e-5)
    assert errors["mse"][40:].min() > errors["mse"][:40].max()
    # pixels of 0..16, not the [0, 1] it trained on: one line, nothing written
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.npz"), "--x", "raw", "-o",
                 str(tmp_path / "raw.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: --input: values from 0 to 16; the model reconstructs values in [0, 1], as it "
        "trained on (pixels)\n") and not (tmp_path / "raw.csv").exists()


SUMMED = """
import torch
from torch import nn


class Summed(nn.Module):
    # Adds its outputs into a bfloat16 tensor: it runs only under bf16 autocast
    def __init__(self, *, input_shape, n_outputs):
        super().__init__()
        self.lin = nn.Linear(64, n_outputs)
        self.n = n_outputs

    def forward(self, x):
        h = self.lin(x.flatten(1))%s
        out = torch.zeros(h.shape[0], self.n, dtype=torch.bfloat16)
        return out.index_add_(1, torch.arange(self.n), h).float()
"""


def test_a_model_predicts_in_the_precision_it_trained_in(tmp_path, stores, write_config):
    """`predict` ran a bf16 trial's model in fp32: a net that runs only under
    autocast died in a traceback, and the built-in ones' probabilities differed
    from what the trial evaluated. A model failing on the inputs is one line."""
    from sklearn.datasets import load_digits
    (tmp_path / "summed.py").write_text(SUMMED % "")
    config = {"study": "bf", "model": f"{tmp_path / 'summed.py'}:Summed",
              "params": {"epochs": 2, "lr": 0.05, "precision": "bf16"},
              "search": {"trials": 1}, "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    x = (load_digits().images[:30] / 16).astype(np.float32)
    np.savez(tmp_path / "new.npz", x=x)
    out = tmp_path / "p.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new.npz"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    trained = load_trained(run_id, stores.mlflow_uri)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        scores = trained.model(torch.as_tensor(x)).float().numpy()
    predicted = pd.read_csv(out)
    assert list(predicted["prediction"]) == list(scores.argmax(axis=1))
    assert predicted["probability_0"].to_numpy() == pytest.approx(
        np.exp(scores[:, 0]) / np.exp(scores).sum(axis=1), rel=1e-4)

    (tmp_path / "summed.py").write_text(SUMMED % "\n        raise ValueError('no such layer')")
    # A new process: this one keeps the file's module as it first read it.
    res = subprocess.run([sys.executable, "-m", "hypersweep.cli.app", "predict", run_id, "-i",
                          str(tmp_path / "new.npz"), "-o", str(tmp_path / "q.csv"),
                          "--tracking-uri", stores.mlflow_uri], capture_output=True, text=True,
                         cwd=ROOT)
    assert res.returncode == 2 and not (tmp_path / "q.csv").exists()
    assert res.stderr.splitlines()[-1] == (
        f"error: SOURCE: the model {tmp_path / 'summed.py'}:Summed of run {run_id} fails on "
        f"the inputs: ValueError: no such layer"), res.stderr


def test_a_seq2seq_model_decodes_sequences_of_a_text_file(tmp_path, stores, write_config):
    """One sequence a line, a character a token (spaces between them allowed): the
    decoded sequence, as the model decodes the one-hot inputs of an .npz archive."""
    config = {"study": "rev", "model": "seq2seq",
              "data": {"name": "reverse", "options": {"length": 5, "vocab": 6, "n": 600}},
              "params": {"epochs": 25, "lr": 0.01},
              "search": {"trials": 1, "objective": {"metric": "val_loss", "direction": "minimize"}},
              "resources": {"executor": "serial"}}
    run_id = best_run(stores, config, write_config)
    (tmp_path / "seqs.txt").write_text("01234\n\n5 4 3 2 1\n00055\n")
    out = tmp_path / "decoded.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "seqs.txt"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    decoded = pd.read_csv(out, dtype=str)
    assert list(decoded["input"]) == ["01234", "5 4 3 2 1", "00055"]
    tokens = [[0, 1, 2, 3, 4], [5, 4, 3, 2, 1], [0, 0, 0, 5, 5]]
    np.savez(tmp_path / "seqs.npz", x=np.eye(6, dtype=np.float32)[tokens])
    trained = load_trained(run_id, stores.mlflow_uri)
    ids = trained.outputs(np.eye(6, dtype=np.float32)[tokens]).argmax(axis=-1)
    assert list(decoded["prediction"]) == ["".join(map(str, row)) for row in ids]
    reversed_ = [s.replace(" ", "")[::-1] for s in decoded["input"]]
    assert (decoded["prediction"] == reversed_).sum() >= 2
    res = invoke("predict", run_id, "-i", str(tmp_path / "seqs.npz"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0 and list(pd.read_csv(out, dtype=str)["prediction"]) == \
        list(decoded["prediction"]), res.output
    for text, error in (("0123\n", "line 1: 4 tokens; the model takes sequences of 5"),
                        ("01234\n0123x\n", "line 2: 'x' not in the model's vocabulary 012345")):
        (tmp_path / "bad.txt").write_text(text)
        res = invoke("predict", run_id, "-i", str(tmp_path / "bad.txt"), "-o",
                     str(tmp_path / "bad.csv"), "--tracking-uri", stores.mlflow_uri)
        assert res.exit_code == 2 and res.output == f"error: --input: bad.txt {error}\n"
        assert not (tmp_path / "bad.csv").exists()


def test_diabetes_predictions_are_in_the_target_s_units(stores, write_config):
    """diabetes trains on its target standardised; data.json says by what, and a
    prediction comes back as disease progression (mean about 152), not in stds."""
    from sklearn.datasets import load_diabetes
    config = {"study": "progression", "model": "mlp", "data": "diabetes",
              "params": {"epochs": 30, "lr": 0.01},
              "search": {"trials": 1, "objective": {"metric": "val_mse", "direction": "minimize"}},
              "resources": {"executor": "serial"}}
    assert invoke("run", str(write_config(config)), *stores.cli_args()).exit_code == 0
    run_id = json.loads(invoke("best", "progression", "--json", "--storage",
                               stores.optuna_url).output)[0]["mlflow_run_id"]
    trained = load_trained(run_id, stores.mlflow_uri)
    bunch = load_diabetes()
    assert trained.data["target"] == {"name": "progression", "mean": [bunch.target.mean()],
                                      "std": [pytest.approx(bunch.target.std())]}
    predicted = trained.predict(bunch.data / bunch.data.std(axis=0))["prediction"]
    assert abs(predicted.mean() - bunch.target.mean()) < 20
    assert np.corrcoef(predicted, bunch.target)[0, 1] > 0.6


def image_study(name: str, root) -> dict:
    """One trial of an MLP on an image folder, 6 x 6 pixels: enough to tell colours."""
    return {"study": name, "model": "mlp",
            "data": {"name": "images", "options": {"root": str(root), "size": 6}},
            "params": {"epochs": 30, "lr": 0.01},
            "search": {"strategy": "random", "trials": 1}, "resources": {"executor": "serial"}}


def test_a_model_of_an_image_folder_predicts_images_by_file(tmp_path, stores, write_config):
    """Red, green and blue pictures: new ones, in a folder of their own (nested too)
    or one alone, are read as the training images were and named by file."""
    from tests.models.test_image_folder import BLUE, GREEN, RED, solid
    colours = {"blue": BLUE, "green": GREEN, "red": RED}
    for name, colour in colours.items():
        for i in range(10):
            solid(tmp_path / "pics" / name / f"{i}.png", colour, size=(12, 10))
    run_id = best_run(stores, image_study("colours", tmp_path / "pics"), write_config)
    solid(tmp_path / "new" / "a.jpg", RED, size=(20, 20), format="JPEG")
    solid(tmp_path / "new" / "more" / "b.png", BLUE, size=(7, 9))
    (tmp_path / "new" / "notes.txt").write_text("not an image")
    out = tmp_path / "colours.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    predicted = pd.read_csv(out)
    assert list(predicted["file"]) == ["a.jpg", "more/b.png"]
    assert list(predicted["prediction"]) == ["red", "blue"]
    res = invoke("predict", run_id, "-i", str(tmp_path / "new" / "more" / "b.png"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0 and list(pd.read_csv(out)["file"]) == ["b.png"], res.output
    solid(tmp_path / "tiff" / "t.tif", RED, size=(8, 8), format="TIFF")
    res = invoke("predict", run_id, "-i", str(tmp_path / "tiff" / "t.tif"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output == (
        "error: --input: t.tif: the model trained on images of the extensions png, jpg, jpeg, "
        "bmp, gif, webp (data.options.extensions); give one of those\n"), res.output
    (tmp_path / "new" / "c.png").write_text("a text file named .png")
    res = invoke("predict", run_id, "-i", str(tmp_path / "new"), "-o", str(tmp_path / "x.csv"),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output.startswith(
        f"error: --input: {tmp_path / 'new' / 'c.png'} is not an image"), res.output


def test_image_and_class_names_that_are_not_utf_8_train_and_predict(tmp_path, stores,
                                                                    write_config):
    """Names as a file system may hold them, bytes that are not UTF-8 (b"r\\xffed",
    which Python holds as lone surrogates): the study runs, its class is named with
    the bytes escaped, and predict writes such a file's name escaped too."""
    from tests.models.test_image_folder import BLUE, RED, solid
    for name, colour in (("blue", BLUE), ("r\udcffed", RED)):
        for i in range(10):
            solid(tmp_path / "pics" / name / f"{i}\udcfe.png", colour, size=(8, 8))
    run_id = best_run(stores, image_study("bytes", tmp_path / "pics"), write_config)
    solid(tmp_path / "new" / "a\udcff.png", RED, size=(8, 8))
    out = tmp_path / "bytes.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "new"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    predicted = pd.read_csv(out)
    assert list(predicted["file"]) == ["a\\xff.png"]
    assert list(predicted["prediction"]) == ["r\\xffed"]


def test_an_array_shaped_as_a_sequence_model_s_inputs_is_read_as_sequences(
        tmp_path, stores, write_config):
    """(n, 8, 8) for an rnn on seq_digits: 8 steps of 8, not one-channel images."""
    from sklearn.datasets import load_digits
    config = {"study": "rows", "model": "rnn", "data": "seq_digits", "params": {"epochs": 2},
              "search": {"trials": 1}, "resources": {"executor": "serial"}}
    assert invoke("run", str(write_config(config)), *stores.cli_args()).exit_code == 0
    run_id = json.loads(invoke("best", "rows", "--json", "--storage",
                               stores.optuna_url).output)[0]["mlflow_run_id"]
    rows = (load_digits().images[:20] / 16).astype(np.float32)
    np.savez(tmp_path / "rows.npz", x=rows)
    out = tmp_path / "rows.csv"
    res = invoke("predict", run_id, "-i", str(tmp_path / "rows.npz"), "-o", str(out),
                 "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    trained = load_trained(run_id, stores.mlflow_uri)
    assert list(pd.read_csv(out)["prediction"]) == list(trained.outputs(rows).argmax(axis=1))


def test_new_rows_read_as_the_training_file_was_and_bad_ones_refused(tmp_path, stores):
    """The training file's separator and decimal mark; a text column's categories
    compared as text; and one line, exit 2, nothing written, for a value that is
    not finite, a file with no rows, an archive for a table's model, the input
    file as the output."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({"size": rng.normal(5, 1, n).round(2),
                          "code": rng.choice(["1", "2", "x"], n)})
    frame["label"] = np.where(frame["size"] > 5, "big", "small")
    frame.to_csv(tmp_path / "train.csv", sep=";", decimal=",", index=False)
    config = {"study": "semi", "model": "mlp",
              "data": {"name": "csv", "options": {"path": str(tmp_path / "train.csv"),
                                                  "sep": ";", "decimal": ","}},
              "params": {"epochs": 30, "lr": 0.01},
              "search": {"strategy": "random", "trials": 1}, "resources": {"executor": "serial"}}
    path = tmp_path / "semi.yaml"
    path.write_text(yaml.safe_dump(config))
    assert invoke("run", str(path), *stores.cli_args()).exit_code == 0
    run_id = json.loads(invoke("best", "semi", "--json", "--storage",
                               stores.optuna_url).output)[0]["mlflow_run_id"]
    # `code` holds only numbers here: pandas reads them as such, the model's categories are text
    new = frame[frame["code"] != "x"].head(10).drop(columns=["label"])
    new.to_csv(tmp_path / "new.csv", sep=";", decimal=",", index=False)
    out = tmp_path / "out.csv"

    def predict(source: Path, output: Path = out):
        return invoke("predict", run_id, "-i", str(source), "-o", str(output),
                      "--tracking-uri", stores.mlflow_uri)

    res = predict(tmp_path / "new.csv")
    assert res.exit_code == 0, res.output
    predicted = pd.read_csv(out)["prediction"].to_numpy()
    assert (predicted == frame.loc[new.index, "label"].to_numpy()).mean() >= 0.8
    out.unlink()
    # From Python: the rows as a DataFrame, made inputs as the file's are
    trained = load_trained(run_id, stores.mlflow_uri)
    assert list(trained.predict(pd.read_csv(tmp_path / "new.csv", sep=";", decimal=","))[
        "prediction"]) == list(predicted)
    with pytest.raises(UserError, match="^x: the DataFrame has no column 'code'; the model "):
        trained.predict(new.drop(columns=["code"]))
    # numbers as text (dtype=str, JSON) are numbers; a row is named by its index
    assert list(trained.predict(new.astype(str))["prediction"]) == list(predicted)
    with pytest.raises(UserError) as e:
        trained.predict(new.assign(size=[np.inf] + [5.0] * 9))
    assert str(e.value) == ("x: the DataFrame: column 'size' holds inf in the row of index "
                            f"{new.index[0]}, not a finite number")
    # arrays: finite samples of the training shape, or one line naming x
    for x, error in ((np.full((2, 4), np.nan), "x: sample 0 (counted from 0) holds a value "
                                                "that is not a finite number"),
                     (np.zeros((0, 4)), "x: no samples"),
                     ([[1, 2, 3]], "x: samples of shape (3,); the model takes (4,)"),
                     ([["a"] * 4], "x: not an array of numbers")):
        with pytest.raises(UserError) as e:
            trained.predict(x)
        assert str(e.value).startswith(error), (x, str(e.value))
    # --keep: an id column copied first
    new.assign(id=[f"r{i}" for i in range(10)]).to_csv(tmp_path / "ids.csv", sep=";",
                                                        decimal=",", index=False)
    res = invoke("predict", run_id, "-i", str(tmp_path / "ids.csv"), "-o", str(out),
                 "--keep", "id", "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 0, res.output
    kept = pd.read_csv(out)
    assert list(kept.columns[:2]) == ["id", "prediction"] and list(kept["id"]) == \
        [f"r{i}" for i in range(10)] and list(kept["prediction"]) == list(predicted)
    out.unlink()
    for args, error in ((["--keep", "ID"], "error: --keep: ids.csv: unknown column 'ID' (did "
                                           "you mean 'id'?)"),
                        (["--keep", "id", "-i", str(tmp_path / "rows.npz")],
                         "error: --keep: copies a CSV file's columns; rows.npz is not one")):
        np.savez(tmp_path / "rows.npz", x=np.zeros((2, 4), dtype=np.float32))
        argv = ["predict", run_id, "-i", str(tmp_path / "ids.csv"), "-o", str(out),
                "--tracking-uri", stores.mlflow_uri, *args]
        res = invoke(*argv)
        assert res.exit_code == 2 and res.output.startswith(error), res.output
        assert not out.exists()
    (tmp_path / "inf.csv").write_text("size;code\n5,5;1\ninf;2\n")
    (tmp_path / "empty.csv").write_text("size;code\n")
    (tmp_path / "gap.csv").write_text("size;code\n5,5;1\n4;2\n;1\n")
    (tmp_path / "odd.csv").write_text("size;code\n5,5;1\n?;2\n;3\n")     # the first named
    (tmp_path / "odd-gap.csv").write_text("size;code\n5,5;1\n;2\n?;3\n")
    (tmp_path / "new-code.csv").write_text("size;code\n5,5;1\n4;zz\n4;x\n4;y\n")
    (tmp_path / "twice.csv").write_text("size;code;size\n5,5;1;4\n")
    for source, error in (
            ("inf.csv", "error: --input: inf.csv: column 'size' holds inf in row 2 (line 3), "
                        "not a finite number"),
            ("empty.csv", "error: --input: empty.csv has a header but no rows"),
            ("gap.csv", "error: --input: gap.csv: column 'size' is empty in row 3 (line 4)"),
            ("odd.csv", "error: --input: odd.csv: column 'size' holds '?' in row 2 (line 3), "
                        "not a number, as the column was in the training file"),
            ("odd-gap.csv", "error: --input: odd-gap.csv: column 'size' is empty in row 2 "
                            "(line 3)"),
            ("new-code.csv", "error: --input: new-code.csv: column 'code' holds 'zz' in row 2 "
                             "(line 3) (and 'y'), which the training file did not; the model "
                             "knows ['1', '2', 'x']"),
            ("twice.csv", "error: --input: twice.csv: the header names column 'size' twice "
                          "(columns 1 and 3); give each column a name of its own"),
            ("rows.npz", "error: --input: rows.npz: the model trained on a CSV file's columns")):
        res = predict(tmp_path / source)
        assert res.exit_code == 2 and res.output.startswith(error), (source, res.output)
        assert len(res.output.strip().splitlines()) == 1 and not out.exists()
    before = (tmp_path / "new.csv").read_text()
    res = predict(tmp_path / "new.csv", tmp_path / "new.csv")
    assert res.exit_code == 2 and res.output.startswith("error: --output: ") and \
        "is the input file" in res.output
    assert (tmp_path / "new.csv").read_text() == before


def test_a_failed_trial_s_run_has_no_model_to_predict_with(tmp_path, stores, write_config):
    config = {"study": "nan", "model": "mlp", "params": {"epochs": 2, "lr": 1e12,
                                                        "optimizer": "sgd"},
              "search": {"trials": 1}, "resources": {"executor": "serial"}}
    assert invoke("run", str(write_config(config)), *stores.cli_args()).exit_code == 0
    [failed] = study_runs(stores.mlflow_uri, "nan")[1]
    assert failed.data.tags["state"] == "FAIL"
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 8, 8), dtype=np.float32))
    res = invoke("predict", failed.info.run_id, "-i", str(tmp_path / "x.npz"), "-o",
                 str(tmp_path / "out.csv"), "--tracking-uri", stores.mlflow_uri)
    assert res.exit_code == 2 and res.output.startswith(
        f"error: SOURCE: run {failed.info.run_id} is a failed trial's, with no trained model"), \
        res.output


def test_a_text_file_of_sequences_may_start_with_a_byte_order_mark(tmp_path):
    """Notepad's UTF-8 starts with one: not a token the model does not know."""
    from hypersweep.search.predict import Trained, _sequence_inputs
    trained = Trained(model=None, spec=None, data={"classes": list("0123"), "input_shape": [3, 4],
                                                   "task": "sequence_transduction"}, run_id="")
    (tmp_path / "s.txt").write_bytes("\ufeff012\n321\n".encode("utf-8"))
    x, columns = _sequence_inputs(trained, tmp_path / "s.txt")
    assert columns == {"input": ["012", "321"]} and x.shape == (2, 3, 4)
    assert x[1].argmax(axis=1).tolist() == [3, 2, 1]


def test_a_true_false_column_s_values_are_known_beside_a_value_it_never_held(tmp_path):
    """A column of True/False in training, read as text at predict time because
    one of its values is neither: its 'False' was named as unknown too."""
    from hypersweep.search.predict import table_inputs

    layout = [{"column": "flag", "one_hot": [False, True]}]
    frame = pd.DataFrame({"flag": ["True", "False", "maybe"]})
    with pytest.raises(UserError) as e:
        table_inputs(frame, layout, tmp_path / "rows.csv")
    assert str(e.value) == ("--input: rows.csv: column 'flag' holds 'maybe' in row 3 (line 4), "
                            "which the training file did not; the model knows [False, True]")
    x = table_inputs(pd.DataFrame({"flag": ["True", "False"]}), layout, tmp_path / "rows.csv")
    assert x.tolist() == [[0.0, 1.0], [1.0, 0.0]]
