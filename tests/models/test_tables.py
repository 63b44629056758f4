"""The csv and npz loaders on small files written into tmp_path: encoding, the task
the auto rule picks, every one-line error, and a study on a CSV file run from the CLI."""
from __future__ import annotations

from pathlib import Path

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.data import dataset_options, load_dataset
from hypersweep.models.errors import UserError
from hypersweep.models.tables import csv_table, npz_arrays
from hypersweep.models.trial import TrialState
from tests.conftest import study_runs


def write_csv(path: Path, n: int = 40, **columns) -> str:
    """A CSV of `n` rows: `columns` as given, else a default mix of column kinds."""
    rng = np.random.default_rng(0)
    columns = columns or {
        "size": rng.normal(50.0, 10.0, n),                         # float
        "rooms": rng.integers(1, 6, n),                            # int
        "colour": np.array(["red", "green", "blue", "green"] * (n // 4)),   # text
        "garden": np.array([True, False] * (n // 2)),              # bool
        "floor": np.full(n, 3),                                    # constant
        "kind": np.array(["flat", "house"] * (n // 2)),            # the target (last)
    }
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def write_text(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- csv: encoding

def test_csv_standardises_numbers_and_one_hot_encodes_the_rest(tmp_path):
    path = write_csv(tmp_path / "homes.csv")
    raw = csv_table(path=path)
    frame = pd.read_csv(path)
    # size, rooms, colour (3 values), garden (2), floor (constant): 1 + 1 + 3 + 2 + 1
    assert raw.x.shape == (40, 8) and raw.x.dtype == np.float32
    assert raw.task == "classification" and raw.class_names == ("flat", "house")
    assert raw.y.dtype == np.int64 and raw.y.tolist() == [0, 1] * 20
    size = (frame["size"] - frame["size"].mean()) / frame["size"].std(ddof=0)
    np.testing.assert_allclose(raw.x[:, 0], size, rtol=1e-5, atol=1e-6)
    assert abs(raw.x[:, 1].mean()) < 1e-6 and abs(raw.x[:, 1].std() - 1) < 1e-5
    # colour one-hot in sorted order: blue, green, red
    colour = frame["colour"].to_numpy()
    assert raw.x[:, 2:5].tolist() == [[c == "blue", c == "green", c == "red"] for c in colour]
    assert raw.x[:, 5:7].tolist() == [[not g, g] for g in frame["garden"]]
    assert (raw.x[:, 7] == 0).all()                     # a constant column: all 0, not NaN
    assert not raw.x.flags.writeable                    # cached arrays are shared


def test_csv_features_and_target_pick_the_columns(tmp_path):
    path = write_csv(tmp_path / "homes.csv")
    raw = csv_table(path=path, target="colour", features="garden, size")
    assert raw.x.shape == (40, 3)                       # garden (2 one-hot), then size
    assert raw.x[:, :2].sum(axis=1).tolist() == [1.0] * 40
    assert raw.class_names == ("blue", "green", "red")
    s = load_dataset("csv", path=path, target="colour", features="garden, size",
                     val_fraction=0.25, test_fraction=0.25)
    assert s.input_shape == (3,) and s.n_outputs == 3 and s.task == "classification"
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 40


def test_csv_regression_target_is_standardised(tmp_path):
    rng = np.random.default_rng(1)
    price = rng.normal(300.0, 40.0, 30)
    path = write_csv(tmp_path / "p.csv", x=rng.normal(size=30), price=price)
    raw = csv_table(path=path)
    assert raw.task == "regression" and raw.class_names == ()
    assert raw.y.shape == (30, 1) and raw.y.dtype == np.float32
    np.testing.assert_allclose(raw.y[:, 0], (price - price.mean()) / price.std(), rtol=1e-5)
    s = load_dataset("csv", path=path)
    assert s.n_outputs == 1 and s.y_train.dtype == torch.float32


def test_csv_separator_and_byte_order_mark(tmp_path):
    rows = "".join(f"{i};{i % 2}\n" for i in range(20))
    path = tmp_path / "semi.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"value;label\n{rows}".encode())
    raw = csv_table(path=str(path), sep=";", target="label")   # not "\ufefflabel"
    assert raw.x.shape == (20, 1) and raw.class_names == ("0", "1")


# ---------------------------------------------------------------- the auto rule

@pytest.mark.parametrize("target, task, names", [
    (["a", "b"] * 10, "classification", ("a", "b")),                    # text
    ([True, False] * 10, "classification", ("False", "True")),          # bool
    ([0.5, 1.25] * 10, "regression", ()),                               # non-integer numbers
    ([3, 10, 2, 1] * 5, "classification", ("1", "2", "3", "10")),      # ints: numeric order
    ([1.0, 2.0] * 10, "classification", ("1", "2")),                    # integer-valued floats
    (list(range(20)) * 2, "classification", tuple(str(i) for i in range(20))),   # 20 ints
    (list(range(21)) * 2, "regression", ()),                            # 21 ints
])
def test_auto_task_rule(tmp_path, target, task, names):
    path = write_csv(tmp_path / "t.csv", x=np.arange(len(target)), y=target)
    raw = csv_table(path=path)
    assert raw.task == task and raw.class_names == names
    if task == "classification":
        assert [names[i] for i in raw.y] == [str(int(v)) if isinstance(v, float) else str(v)
                                            for v in target]


def test_task_option_overrides_auto(tmp_path):
    path = write_csv(tmp_path / "t.csv", x=np.arange(42), y=list(range(21)) * 2)
    many = csv_table(path=path, task="classification")
    assert many.task == "classification" and many.class_names[:3] == ("0", "1", "2")
    assert len(many.class_names) == 21
    few = write_csv(tmp_path / "few.csv", x=np.arange(20), y=[1, 2] * 10)
    raw = csv_table(path=few, task="regression")
    assert raw.task == "regression" and raw.y.shape == (20, 1)
    assert set(dataset_options("csv")) == {"path", "target", "features", "task", "sep", "decimal",
                                           "exclude"}
    assert dataset_options("csv")["task"].choices == ("auto", "classification", "regression")


# ---------------------------------------------------------------- csv: errors

def csv_error(tmp_path, text: str | bytes | None = None, **options) -> str:
    path = tmp_path / "bad.csv"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    options.setdefault("path", str(path))
    with pytest.raises(UserError) as e:
        load_dataset("csv", **options)
    message = str(e.value)
    assert "\n" not in message
    return message


GOOD = "a,b,colour,y\n" + "".join(f"{i},{i % 3},{'rg'[i % 2]},{'xyz'[i % 3]}\n"
                                  for i in range(30))


@pytest.mark.parametrize("text, options, expected", [
    (None, {"path": ""}, "data.options.path: required: a CSV file to read"),
    (None, {}, "data.options.path: no such file: "),
    ("", {}, "data.options.path: {path} is empty; expected a header row"),
    ("a,y\n", {}, "data.options.path: {path} has no data rows; a study needs at least 10"),
    ("a,y\n1,2\n3,4\n", {}, "data.options.path: {path} has 2 data rows; a study needs at "
                            "least 10"),
    (b"a,y\n" + b"1,\xff\n" * 12, {}, "data.options.path: {path} is not UTF-8: byte 0xff "
                                      "at offset 6 does not decode"),
    ("a,y\n1,2\n1,2,3\n" * 6, {}, "data.options.path: cannot parse {path} as CSV with sep "
                                  "',': Error tokenizing data"),
    ("a;b;y\n" + "1;2;3\n" * 12, {}, "data.options.path: {path} has a single column "
                                     "('a;b;y'), the target, and no features; its header "
                                     "holds ';': if that separates the columns, set "
                                     "data.options.sep: ';'"),
    (GOOD, {"target": "Y"}, "data.options.target: unknown column 'Y' (did you mean 'y'?); "
                            "valid: a, b, colour, y"),
    (GOOD, {"features": "a, color"}, "data.options.features: unknown column 'color' (did you "
                                     "mean 'colour'?); valid: a, b, colour, y"),
    (GOOD, {"features": "a,y"}, "data.options.features: 'y' is the target "
                                "(data.options.target); list only input columns"),
    (GOOD, {"features": "a,b,a"}, "data.options.features: 'a' is listed twice"),
    (GOOD, {"sep": "\\t"}, "data.options.sep: must be one character"),
    (GOOD, {"task": "regresion"}, "data.options.task: unknown value 'regresion' (did you "
                                  "mean 'regression'?); valid: auto, classification, "
                                  "regression"),
    (GOOD, {"task": "regression"}, "data.options.task: regression needs numbers, but column "
                                   "'y' holds text (such as 'x'); use task: classification"),
    ("a,y\n" + "".join(f"{i},{i + 0.5}\n" for i in range(12)), {"task": "classification"},
     "data.options.task: classification needs class labels, but column 'y' holds numbers "
     "that are not integers (such as 0.5); use task: regression (or auto)"),
    ("a,y\n" + "".join(f"{i},same\n" for i in range(12)), {},
     "data.options.target: column 'y' holds a single class ('same') in every row; "
     "classification needs at least 2"),
    ("a,y\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(12)) + "0,c\n", {},
     "data.options.target: in column 'y', class 'c' has a single sample; a stratified split "
     "needs at least 2 of each class"),
    ("a,y\n" + "".join(f"{i},7.5\n" for i in range(12)), {},
     "data.options.target: column 'y' holds the same value in every row; there is nothing "
     "to regress"),
    ("a,b,y\n" + "".join(f"{i},{'' if i == 4 else i},{i % 2}\n" for i in range(12)), {},
     "data.options.path: column 'b' of {path} has a missing value (an empty cell, NA, NaN, "
     "null, ...) in row 5 (line 6; 1 row in all); nothing is imputed: fill or drop those "
     "rows, or leave the column out (data.options.exclude)"),
    ("a,b,y\n" + "".join(f"{i},{'NA' if i % 4 == 3 else 'q'},{i % 2}\n" for i in range(12)),
     {}, "column 'b' of {path} has a missing value (an empty cell, NA, NaN, null, ...) in "
         "row 4 (line 5; 3 rows in all)"),
    ("a,y\n" + "".join(f"{i},{'' if i == 9 else i % 2}\n" for i in range(12)), {},
     "in row 10 (line 11; 1 row in all); nothing is imputed: fill or drop those rows"),
    ("a,y\n" + "".join(f"{'inf' if i == 2 else i},{i % 2}\n" for i in range(12)), {},
     "data.options.path: column 'a' of {path} has an infinite value in row 3 (line 4"),
    # Past about 1e154 a column's variance overflows: its std was inf, every value 0.
    ("a,b,y\n" + "".join(f"{1e200 if i == 3 else i},{i},{i % 2}\n" for i in range(12)), {},
     "data.options.features: column 'a' holds numbers too large to standardise (up to "
     "1e+200)"),
    ("a,y\n" + "".join(f"{i},{1e200 if i == 3 else i + 0.5}\n" for i in range(12)), {},
     "data.options.target: column 'y' holds numbers too large to standardise (up to 1e+200)"),
    # No header row: the first sample named the columns, and was lost.
    ("".join(f"{i * 0.5},{-i},{i % 2}\n" for i in range(12)), {},
     "data.options.path: {path} has no header row, it seems: its first row (0.0, 0, 0) holds "
     "only numbers, which would name the columns; add a first row of column names (numbers "
     "that are the names: name the target column, data.options.target)"),
    ("".join(f"{i},5;{i};1e{i};{-i};{i % 2}\n" for i in range(12)), {"sep": ";", "decimal": ","},
     "its first row (0,5, 0, 1e0, 0, ...) holds only numbers"),
    ("a,b,a,y\n" + "".join(f"{i},{i},{i},{i % 2}\n" for i in range(12)), {},
     "data.options.path: {path}: the header names column 'a' twice (columns 1 and 3); give "
     "each column a name of its own"),
])
def test_csv_errors_are_one_line_and_name_the_key(tmp_path, text, options, expected):
    message = csv_error(tmp_path, text, **options)
    assert expected.replace("{path}", str(tmp_path / "bad.csv")) in message, message


def test_csv_error_for_a_directory(tmp_path):
    message = csv_error(tmp_path, path=str(tmp_path))
    assert message == f"data.options.path: {tmp_path} is a directory; name a CSV file in it"


def test_csv_missing_values_in_a_column_not_used_are_fine(tmp_path):
    text = "a,notes,y\n" + "".join(f"{i},{'' if i % 2 else 'n'},{i % 2}\n" for i in range(12))
    path = write_text(tmp_path / "notes.csv", text)
    assert csv_table(path=path, features="a").x.shape == (12, 1)


def test_csv_features_may_be_a_yaml_list(tmp_path):
    path = write_csv(tmp_path / "homes.csv")
    listed = load_dataset("csv", path=path, features=["size", "rooms"])
    assert torch.equal(listed.x_train, load_dataset("csv", path=path,
                                                    features="size, rooms").x_train)
    with pytest.raises(UserError, match=r"^data\.options\.features: expected a string, got a list"):
        load_dataset("csv", path=path, features=["size", 3])


# ---------------------------------------------------------------- npz

def test_npz_images_get_a_channel_axis_and_uint8_is_scaled(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 6, 7), dtype=np.uint8)
    np.savez(tmp_path / "img.npz", x=x, y=np.arange(30) % 3)
    raw = npz_arrays(path=str(tmp_path / "img.npz"))
    assert raw.x.shape == (30, 1, 6, 7) and raw.x.dtype == np.float32
    np.testing.assert_allclose(raw.x[:, 0], x / 255.0, rtol=1e-6)
    assert raw.task == "classification" and raw.class_names == ("0", "1", "2")
    s = load_dataset("npz", path=str(tmp_path / "img.npz"))
    assert s.input_shape == (1, 6, 7) and s.n_outputs == 3


def test_npz_named_arrays_channels_and_text_labels(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3, 4, 4))
    labels = np.array(["dog", "cat"] * 10)
    np.savez(tmp_path / "d.npz", images=x, labels=labels)
    raw = npz_arrays(path=str(tmp_path / "d.npz"), x="images", y="labels")
    assert raw.x.shape == (20, 3, 4, 4) and raw.x.dtype == np.float32
    np.testing.assert_allclose(raw.x, x.astype(np.float32))      # floats used as they are
    assert raw.class_names == ("cat", "dog") and raw.y.tolist() == [1, 0] * 10


def test_npz_features_and_regression_targets(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.normal(5.0, 3.0, (25, 2))
    np.savez(tmp_path / "r.npz", x=rng.integers(-5, 5, (25, 4)), y=y)
    raw = npz_arrays(path=str(tmp_path / "r.npz"))
    assert raw.x.shape == (25, 4) and raw.x.dtype == np.float32 and raw.x.min() < 0
    assert raw.task == "regression" and raw.y.shape == (25, 2)
    np.testing.assert_allclose(raw.y.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(raw.y.std(axis=0), 1, rtol=1e-5)
    assert load_dataset("npz", path=str(tmp_path / "r.npz")).n_outputs == 2


def npz_error(tmp_path, options=None, raw: bytes | None = None, **arrays) -> str:
    path = tmp_path / "bad.npz"
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez(path, **arrays)
    with pytest.raises(UserError) as e:
        load_dataset("npz", path=str(path), **(options or {}))
    assert "\n" not in str(e.value)
    return str(e.value).replace(str(path), "{path}")


X, Y = np.zeros((12, 2)), np.arange(12) % 2


@pytest.mark.parametrize("options, arrays, expected", [
    ({"x": "inputs"}, {"x": X, "y": Y}, "data.options.x: unknown array 'inputs'; valid: x, y"),
    ({"y": "label"}, {"x": X, "labels": Y}, "data.options.y: unknown array 'label' (did you "
                                            "mean 'labels'?); valid: labels, x"),
    ({}, {"x": X, "y": Y[:11]}, "data.options.y: array 'y' in {path} has 11 entries and 'x' "
                                "12 samples; they must be as many"),
    ({}, {"x": X[:5], "y": Y[:5]}, "data.options.path: {path} has 5 samples; a study needs at "
                                   "least 10"),
    ({}, {"x": np.array(["a"] * 12), "y": Y}, "data.options.x: array 'x' in {path} holds <U1 "
                                              "values; x must hold numbers"),
    ({}, {"x": X.astype(complex), "y": Y}, "holds complex128 values; x must hold numbers"),
    ({}, {"x": np.where(np.arange(24).reshape(12, 2) == 7, np.nan, 0.0), "y": Y},
     "data.options.x: array 'x' in {path} holds NaN in sample 3 (counted from 0; 1 sample in "
     "all); every value must be a finite number"),
    ({}, {"x": X, "y": np.where(Y == 1, np.inf, 0.0)},
     "data.options.y: array 'y' in {path} holds an infinite value in sample 1 (counted from "
     "0; 6 samples in all)"),
    ({}, {"x": np.array([{}] * 12, dtype=object), "y": Y},
     "data.options.x: array 'x' in {path} holds Python objects, which are not unpickled"),
    ({}, {"x": X, "y": np.array([None] * 12)}, "data.options.y: array 'y' in {path} holds "
                                               "Python objects"),
    ({}, {"x": np.zeros((12, 8, 8, 3)), "y": Y}, "data.options.x: array 'x' in {path} is "
                                                 "(12, 8, 8, 3), images with their channels "
                                                 "last, it seems; save them as (n, C, H, W)"),
    ({}, {"x": np.zeros((12, 1, 1, 2, 2)), "y": Y}, "is (12, 1, 1, 2, 2); expected (n, "
                                                    "features), (n, H, W) or (n, C, H, W)"),
    ({}, {"x": X, "y": np.float64(1.0)}, "data.options.y: array 'y' in {path} is a single "
                                         "value; expected one entry per sample"),
    ({}, {"x": X, "y": np.zeros(12)}, "data.options.y: array 'y' holds a single class ('0') "
                                      "in every row"),
    ({"task": "classification"}, {"x": X, "y": np.linspace(0, 1, 12)},
     "data.options.task: classification needs class labels, but array 'y' holds numbers "
     "that are not integers"),
    ({"task": "classification"}, {"x": X, "y": np.ones((12, 2)) * np.arange(12)[:, None]},
     "data.options.task: classification needs one label per sample; array 'y' is (12, 2)"),
    ({"task": "regression"}, {"x": X, "y": np.arange(12) * 1e200},
     "data.options.y: array 'y' holds numbers too large to standardise (up to "
     "1.1e+201)"),
    ({}, {"x": X, "y": np.where(np.arange(12)[:, None] == 5, 0, np.eye(3)[np.arange(12) % 3])},
     "data.options.y: array 'y' is one-hot but for row 5 (counted from 0; 1 row in all), "
     "which holds [0, 0, 0]: a class label is a single 1 in its row; fix those rows, or set "
     "data.options.task: regression to regress its 3 columns"),
    ({}, {}, "data.options.path: {path} holds no arrays; expected x and y"),
    ({}, {"x": np.zeros((0, 8)), "y": Y}, "data.options.x: array 'x' in {path} holds no "
                                          "samples (its shape is (0, 8))"),
    ({}, {"x": X, "y": np.array([])}, "data.options.y: array 'y' in {path} holds no samples"),
])
def test_npz_errors_are_one_line_and_name_the_key(tmp_path, options, arrays, expected):
    assert expected in npz_error(tmp_path, options, **arrays)


@pytest.mark.parametrize("content, expected", [
    (b"", "data.options.path: {path} is empty; expected an .npz archive"),
    (b"x,y\n1,2\n", "data.options.path: {path} is not an .npz archive (a zip of .npy arrays, "
                    "as np.savez writes)"),
    (b"PK\x03\x04 cut short", "data.options.path: cannot read {path} as an .npz archive: "),
])
def test_npz_files_that_are_not_archives(tmp_path, content, expected):
    assert npz_error(tmp_path, raw=content).startswith(expected)


def test_npz_a_single_npy_array_says_how_to_save_both(tmp_path):
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(UserError, match=r"^data\.options\.path: .*x\.npy is an \.npy file of "
                                        r"one array; save x and y together with np\.savez"):
        load_dataset("npz", path=str(tmp_path / "x.npy"))


# ---------------------------------------------------------------- training on them

def test_mlp_regresses_a_csv_and_lenet_classifies_npz_images(tmp_path, run):
    rng = np.random.default_rng(0)
    a = rng.normal(size=120)
    path = write_csv(tmp_path / "r.csv", a=a, kind=np.array(["u", "v", "w"] * 40),
                     out=3 * a + 10)
    r = run("mlp", {"name": "csv", "options": {"path": path}}, epochs=3, width=16, lr=0.01)
    assert r.state is TrialState.COMPLETE
    assert {"val_mse", "val_mae"} <= set(r.metrics) and np.isfinite(r.metrics["val_mse"])
    assert r.history[-1]["train_loss"] < r.history[0]["train_loss"]

    x = rng.integers(0, 256, (60, 10, 10), dtype=np.uint8)
    np.savez(tmp_path / "i.npz", x=x, y=np.arange(60) % 3)
    r = run("lenet", {"name": "npz", "options": {"path": str(tmp_path / "i.npz")}},
            epochs=2, channels=2, hidden=8, batch_size=16)
    assert r.state is TrialState.COMPLETE and 0 <= r.metrics["val_accuracy"] <= 1


# ---------------------------------------------------------------- from the CLI

def test_a_study_on_a_csv_file_runs_from_the_cli(tmp_path, stores, monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100), rng.normal(size=100)
    write_csv(tmp_path / "train.csv", a=a, b=b, colour=np.array(["r", "g"] * 50),
              label=np.where(a + b > 0, "yes", "no"))
    study = {"study": "csv-study",
             "data": {"name": "csv", "options": {"path": "train.csv", "target": "label"}},
             "model": "mlp", "params": {"epochs": 2, "width": 8, "batch_size": 32},
             "space": {"lr": {"loguniform": [1e-3, 1e-1]}},
             "search": {"strategy": "random", "seed": 0}}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    monkeypatch.chdir(tmp_path)          # the relative data path is read from here
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(config), "--executor", "serial", "--trials", "2",
                              *stores.cli_args()], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "mlp on csv" in res.output and "val_accuracy" in res.output
    parent, children = study_runs(stores.mlflow_uri, "csv-study")
    assert [c.data.tags["state"] for c in children] == ["COMPLETE"] * 2
    client = MlflowClient(tracking_uri=stores.mlflow_uri)
    stored = yaml.safe_load(open(client.download_artifacts(parent.info.run_id, "study.yaml")))
    assert stored["data"]["options"]["path"] == str(tmp_path / "train.csv")
    # What it takes to feed the trained model a new row: in input order, each
    # column's mean and std, or its categories; the classes in label order.
    described = json.load(open(client.download_artifacts(parent.info.run_id, "data.json")))
    assert described["classes"] == ["no", "yes"] and described["input_shape"] == [4]
    assert [i["column"] for i in described["inputs"]] == ["a", "b", "colour"]
    assert described["inputs"][0]["mean"] == pytest.approx(a.mean())
    assert described["inputs"][1]["std"] == pytest.approx(b.std())
    assert described["inputs"][2]["one_hot"] == ["g", "r"]
    assert described["target"] == {"name": "label", "classes": ["no", "yes"]}

    bad = dict(study, data={"name": "csv", "options": {"path": "train.csv", "target": "lable"}})
    config.write_text(yaml.safe_dump(bad))
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["validate", str(config), "--tracking-uri",
                              f"sqlite:///{empty}/m.db", "--storage", f"sqlite:///{empty}/o.db"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: data.options.target: unknown column 'lable' (did you mean 'label'?); valid: "
        "a, b, colour, label"]
    assert not any(empty.iterdir())


# ------------------------------------------------- what pandas makes of a file

def test_a_row_index_written_by_pandas_is_left_out_and_said(tmp_path):
    """`DataFrame.to_csv` writes the index as a column with no name; rows sorted by
    the target, it gave the target away (val_accuracy 1.0 on noise)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=40), "churn": ["no"] * 20 + ["yes"] * 20})
    frame.to_csv(tmp_path / "sorted.csv")            # index=True: "Unnamed: 0"
    raw = csv_table(path=str(tmp_path / "sorted.csv"))
    assert raw.x.shape == (40, 1)
    assert raw.notes == (
        "data.options.task: auto reads column 'churn' as classification, 2 classes (no, yes)",
        "data.options.features: 1 input from a; 'Unnamed: 0' left out (no name: a row index)")
    # Named in features, it is taken.
    assert csv_table(path=str(tmp_path / "sorted.csv"), features="Unnamed: 0, a").x.shape == (40, 2)


def test_numbers_pandas_reads_as_text_are_refused_not_one_hot_encoded(tmp_path):
    """A decimal comma or a stray `?` made each number a category of its own: 600
    rows gave 1,208 inputs, without a word."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"income": rng.normal(1000, 10, 30).round(2), "y": [0, 1] * 15})
    frame.to_csv(tmp_path / "eu.csv", sep=";", decimal=",", index=False)
    assert csv_error(tmp_path, path=str(tmp_path / "eu.csv"), sep=";") == (
        "data.options.features: column 'income' holds numbers written with a decimal comma "
        f"(such as '{str(frame.income[0]).replace('.', ',')}'); set data.options.decimal: ','")
    raw = csv_table(path=str(tmp_path / "eu.csv"), sep=";", decimal=",")
    assert raw.x.shape == (30, 1) and abs(raw.x.mean()) < 1e-5
    # Comma-separated, those numbers come quoted: decimal ',' cannot be set beside sep ','.
    frame.to_csv(tmp_path / "quoted.csv", decimal=",", index=False)
    assert csv_error(tmp_path, path=str(tmp_path / "quoted.csv")) == (
        "data.options.features: column 'income' holds numbers with a comma in them (such as "
        f"'{str(frame.income[0]).replace('.', ',')}'), a decimal comma or a thousands separator, "
        "which a comma-separated file cannot have read as numbers: write them without it "
        "(7700, or 7.7), or save the file with sep ';' and set data.options.sep: ';' and "
        "data.options.decimal: ','")
    frame["income"] = frame["income"].astype(str)
    frame.loc[7, "income"] = "?"
    frame.to_csv(tmp_path / "q.csv", index=False)
    assert csv_error(tmp_path, path=str(tmp_path / "q.csv")) == (
        "data.options.features: column 'income' holds numbers, and text ('?'; the first in "
        "row 8), so it reads as text; fill or drop those rows, or leave the column out "
        "(data.options.exclude)")
    assert csv_error(tmp_path, path=str(tmp_path / "q.csv"), decimal=";", sep=";") == (
        "data.options.decimal: must be one character other than sep, such as '.' or ','; "
        "got ';'")


def test_an_identifier_column_is_refused_as_an_input(tmp_path):
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(30)], "town": ["a", "b", "c"] * 10,
                          "y": [0, 1] * 15})
    frame.to_csv(tmp_path / "ids.csv", index=False)
    assert csv_error(tmp_path, path=str(tmp_path / "ids.csv")) == (
        "data.options.features: column 'id' holds text with a different value in every row "
        "(an identifier?); one-hot, each value would be an input of its own that says nothing "
        "of new rows: leave it out (data.options.exclude)")
    assert csv_table(path=str(tmp_path / "ids.csv"), features="town").x.shape == (30, 3)
    assert csv_table(path=str(tmp_path / "ids.csv"), exclude="id").x.shape == (30, 3)


def test_exclude_leaves_columns_out_of_the_default_inputs(tmp_path):
    """An id and a date, left out by name, rather than every other column listed."""
    frame = pd.DataFrame({"id": [f"c{i}" for i in range(30)],
                          "signed": [f"2026-{1 + i % 12:02d}-{1 + i:02d}" for i in range(30)],
                          "area": np.arange(30.0), "town": ["a", "b", "c"] * 10,
                          "y": [0, 1] * 15})
    frame.to_csv(tmp_path / "t.csv", index=False)
    path = str(tmp_path / "t.csv")
    assert csv_error(tmp_path, path=path, exclude="id") == (
        "data.options.features: column 'signed' holds text with a different value in every "
        "row (an identifier?) (dates: turn them into numbers, such as days or a month, in a "
        "column of their own); one-hot, each value would be an input of its own that says "
        "nothing of new rows: leave it out (data.options.exclude)")
    raw = csv_table(path=path, exclude="id, signed")
    assert [c["column"] for c in raw.meta["inputs"]] == ["area", "town"]
    for options, error in (
            ({"exclude": "ID"}, "data.options.exclude: unknown column 'ID' (did you mean 'id'?)"),
            ({"exclude": "y"}, "data.options.exclude: 'y' is the target (data.options.target); "
                               "list only input columns"),
            ({"exclude": "id", "features": "area"}, "data.options.exclude: give features (the "
                                                    "inputs) or exclude (the columns left out "
                                                    "of them), not both"),
            ({"exclude": "id, signed, area, town"}, "data.options.exclude: leaves no input "
                                                    "column beside the target 'y'")):
        assert csv_error(tmp_path, path=path, **options).startswith(error), options


def test_one_hot_targets_are_class_labels(tmp_path):
    """`y = np.eye(10)[labels]` was a regression on 10 targets, and the note's
    `task: classification` was then refused."""
    rng = np.random.default_rng(2)
    labels = np.arange(40) % 4
    np.savez(tmp_path / "oh.npz", x=rng.normal(size=(40, 3)), y=np.eye(4)[labels])
    raw = npz_arrays(path=str(tmp_path / "oh.npz"))
    assert raw.task == "classification" and np.array_equal(raw.y, labels)
    assert raw.class_names == ("0", "1", "2", "3")
    assert raw.notes == ("data.options.task: auto reads array 'y' as classification, 4 classes "
                         "(0, 1, 2, 3)",)       # no other task offered: it would be refused
    assert npz_arrays(path=str(tmp_path / "oh.npz"), task="regression").y.shape == (40, 4)


def test_npz_sequences_stay_sequences_for_recurrent_nets(tmp_path):
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "seq.npz", x=rng.normal(size=(30, 12, 4)), y=np.arange(30) % 2)
    assert npz_arrays(path=str(tmp_path / "seq.npz")).x.shape == (30, 1, 12, 4)     # images
    assert npz_arrays(path=str(tmp_path / "seq.npz"), sequences=True).x.shape == (30, 12, 4)
    np.savez(tmp_path / "flat.npz", x=rng.normal(size=(30, 4)), y=np.arange(30) % 2)
    with pytest.raises(UserError, match=r"^data\.options\.sequences: array 'x' in .* is "
                                        r"\(30, 4\); sequences are \(n, steps, features\)$"):
        npz_arrays(path=str(tmp_path / "flat.npz"), sequences=True)


def test_the_lstm_builder_trains_on_npz_sequences(tmp_path):
    """Checked as `validate` checks a study: a first step of the built-in lstm."""
    from hypersweep.models.train import check_fit

    rng = np.random.default_rng(4)
    np.savez(tmp_path / "seq.npz", x=rng.normal(size=(40, 12, 4)), y=np.arange(40) % 2)
    data = {"name": "npz", "options": {"path": str(tmp_path / "seq.npz"), "sequences": True}}
    assert check_fit("lstm", data, {}) == "classification"


def test_spaces_after_the_separator_are_not_part_of_names_or_values(tmp_path):
    """`a, b, label`: the columns were ' b' and ' label', and the classes ' cat' and
    ' dog'; predict reads the file as training does (and its byte-order mark too)."""
    text = "a, b, label\n" + "".join(f"{i}, {i % 3}, {'cat' if i % 2 else 'dog'}\n"
                                     for i in range(20))
    write_text(tmp_path / "spaced.csv", text)
    raw = csv_table(path=str(tmp_path / "spaced.csv"))
    assert raw.class_names == ("cat", "dog") and raw.x.shape == (20, 2)
    assert [c["column"] for c in raw.meta["inputs"]] == ["a", "b"]
    assert raw.meta["target"]["name"] == "label"
    from hypersweep.search.predict import _read_frame
    (tmp_path / "new.csv").write_text("\ufeffa, b\n1, 2\n", encoding="utf-8")
    assert list(_read_frame(tmp_path / "new.csv").columns) == ["a", "b"]


def test_a_header_of_numbers_is_names_when_the_target_is_one_of_them(tmp_path):
    """Columns named by numbers (wavelengths, say) are a header when the target is
    named: only a first row of numbers with no target named reads as a missing header."""
    text = "400,500,600\n" + "".join(f"{i},{i * 2 % 7},{i % 2}\n" for i in range(20))
    write_text(tmp_path / "bands.csv", text)
    raw = csv_table(path=str(tmp_path / "bands.csv"), target="600")
    assert raw.x.shape == (20, 2) and raw.class_names == ("0", "1")
    assert [c["column"] for c in raw.meta["inputs"]] == ["400", "500"]
