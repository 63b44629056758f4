"""A trained model back from MLflow, and its predictions on new data: `hypersweep
predict` and, from Python, `load_trained`.

A trial's run holds its weights (`model.pt`) and every hyperparameter it trained
with (`trial.yaml`); a `final` run holds the weights it trained on train +
validation (`model/model.pt`), with the architecture of the trial it retrained;
the study's parent run holds `data.json`: one sample's shape, the task, the
classes in label order, and how a CSV file's columns became inputs. The model is
built again from those and given the weights. New rows of a CSV file are made
inputs as the training file's were (its means, stds and categories); an .npz
archive's array as the training archive's was.

What a prediction is depends on the model's task: a class and its probabilities,
a value in the target's units, a reconstruction's error per sample (an
autoencoder's, a VAE's), or the sequence a seq2seq model decodes. Language models
and generators make new samples instead: see search/generate.py.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import yaml

from hypersweep.models.errors import UserError, first_line, unknown
from hypersweep.models.trial import TrialSpec
from hypersweep.search.config import without_password
from hypersweep.search.tracking import ROLE_TAG, MlflowTracker

SUPERVISED = ("classification", "regression")
# What `predict` takes: the supervised tasks, reconstruction (the error per sample)
# and sequence transduction (the decoded sequence). A VAE, a generator, reconstructs
# too (predict_task).
PREDICTS = (*SUPERVISED, "reconstruction", "sequence_transduction")
# models:/NAME/3, models:/NAME/latest, models:/NAME@champion
_NONE = object()    # a category the training file did not have
_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+|latest)|@(?P<alias>[\w-]+))$")


@dataclass
class Trained:
    """A trained model (eval mode, on the CPU), what it trained with, and what it
    takes and gives (the study's data.json)."""

    model: Any              # torch.nn.Module
    spec: TrialSpec
    data: dict[str, Any]
    run_id: str
    final: bool = False     # a final run's (train + validation), not a trial's
    state: str = "COMPLETE"     # the trial's: a PRUNED one's weights are those it stopped at
    epochs: int = 0         # the epochs it trained
    notes: tuple[str, ...] = ()     # what may surprise (its model file edited since)
    precision: str = "fp32"     # params.precision: bf16 runs it under autocast, as it trained

    @contextlib.contextmanager
    def running(self, what: str = "on the inputs") -> Iterator[None]:
        """The model run as its trial trained and evaluated it: without gradients,
        under its precision's autocast (bf16); a failure inside (a model of one's
        own) is one line, `what` saying what it failed at."""
        import torch

        from hypersweep.models.train import precision_autocast
        try:
            with torch.no_grad(), precision_autocast(self.precision):
                yield
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - the model's own code, said in one line
            raise UserError(f"SOURCE: the model {self.spec.model} of run {self.run_id} fails "
                            f"{what}: {type(e).__name__}: {first_line(e)}") from None

    @property
    def task(self) -> str:
        """What the model does: the data's task for the supervised builders, the
        builder's own otherwise (an autoencoder reconstructs, whatever the data)."""
        from hypersweep.models.registry import get_builder
        from hypersweep.models.train import _task_name
        return _task_name(get_builder(self.spec.model).task, self.data["task"])

    @property
    def predict_task(self) -> str:
        """What `predict` does with the model: its task, but a VAE's (generation)
        is its reconstructions'."""
        from hypersweep.models.vae import VAE
        return "reconstruction" if isinstance(self.model, VAE) else self.task

    @property
    def vocabulary(self) -> list[str]:
        """A language model's or a seq2seq model's tokens, by id (the classes)."""
        return [str(c) for c in self.data.get("classes") or []]

    def outputs(self, x: Any, chunk: int = 4096, key: str = "x") -> np.ndarray:
        """The model's raw outputs (a classifier's scores, a regression's values in
        the units it trained on) for inputs shaped as the training inputs were.
        `key` names `x` in errors (`--input` for the command's)."""
        import torch

        x = self._checked(x, key)
        tensor = torch.as_tensor(x)
        with self.running():
            return torch.cat([self.model(tensor[i:i + chunk])
                              for i in range(0, len(tensor), chunk)]).float().numpy()

    def _checked(self, x: Any, key: str) -> np.ndarray:
        """`x` as float32 samples of the training inputs' shape, each finite: a NaN
        gave a class with NaN probabilities, an empty array a torch error."""
        try:
            x = np.ascontiguousarray(x, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise UserError(f"{key}: not an array of numbers: {first_line(e)}") from None
        expected = tuple(self.data["input_shape"])
        if x.ndim == 0 or tuple(x.shape[1:]) != expected:
            raise UserError(f"{key}: samples of shape {tuple(x.shape[1:])}; the model takes "
                            f"{expected}, as the study's data (an array of n samples)")
        if len(x) == 0:
            raise UserError(f"{key}: no samples")
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise UserError(f"{key}: sample {int(np.flatnonzero(bad)[0])} (counted from 0) "
                            "holds a value that is not a finite number")
        return x

    def predict(self, x: Any, key: str = "x") -> "pd.DataFrame":  # noqa: F821 - pandas
        """One row per sample of `x`: an array shaped as the training inputs, or, for
        a model that trained on a CSV file, a DataFrame with its columns (made
        inputs as `predict` makes a file's rows). Classification: `prediction`
        (the class, by name) and `probability_<class>` for each class (softmax).
        Regression: `prediction` (`prediction_<i>` for several targets), in the
        target's own units where the study's data scaled it (a CSV file's column,
        by its mean and std).
        Reconstruction: `mse` and `bce`, the sample's mean squared error and binary
        cross-entropy per value, as the trials' val_mse and val_bce average them.
        Sequence transduction: `prediction`, the decoded tokens (joined by spaces
        where a token is longer than a character)."""
        import pandas as pd

        if isinstance(x, pd.DataFrame):     # a table's rows, from Python
            layout = self.data.get("inputs")
            if not isinstance(layout, list):
                raise UserError(f"x: a DataFrame, but the model trained on "
                                f"'{self.data['dataset']}', not on a CSV file's columns; give "
                                "an array shaped as its inputs")
            try:
                x = table_inputs(x, layout, Path("DataFrame"), lines=False)
            except UserError as e:
                raise UserError(str(e).replace("--input: DataFrame", "x: the DataFrame", 1)) \
                    from None
        task = self.check_predicts()
        if task == "reconstruction":
            return self._reconstruction_errors(x, key)
        out = self.outputs(x, key=key)
        if task == "sequence_transduction":
            return pd.DataFrame({"prediction": [self.tokens_text(row)
                                                for row in out.argmax(axis=-1)]})
        if task == "classification":
            classes = [str(c) for c in self.data["classes"]] or \
                [str(i) for i in range(out.shape[1])]
            shifted = np.exp(out - out.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            frame = pd.DataFrame({"prediction": [classes[i] for i in out.argmax(axis=1)]})
            for i, name in enumerate(classes):
                frame[f"probability_{name}"] = probabilities[:, i]
            return frame
        out = out.reshape(len(out), -1)
        target = self.data.get("target") or {}
        if "mean" in target:
            out = out * np.asarray(target["std"]) + np.asarray(target["mean"])
        names = ["prediction"] if out.shape[1] == 1 else \
            [f"prediction_{i}" for i in range(out.shape[1])]
        return pd.DataFrame(out, columns=names)

    def check_predicts(self) -> str:
        """The task `predict` does for this model; a UserError where it does none."""
        task = self.predict_task
        if task not in PREDICTS:
            # A VAE's task is generation too, but it reconstructs samples (predict_task)
            what = "the model is a GAN's generator, which takes no samples" \
                if task == "generation" else f"the model's task is {task}"
            raise UserError(f"SOURCE: {what}; predict takes a classifier's, a regression's, "
                            "an autoencoder's, a VAE's or a seq2seq model's (hypersweep "
                            "generate samples a language model or a generator)")
        return task

    def tokens_text(self, ids: Any) -> str:
        """Token ids as text: the tokens run together where each is one character."""
        vocab = self.vocabulary
        tokens = [vocab[i] if 0 <= i < len(vocab) else f"<{i}>" for i in map(int, ids)]
        return ("" if all(len(t) == 1 for t in vocab) else " ").join(tokens)

    def _reconstruction_errors(self, x: Any, key: str) -> "pd.DataFrame":  # noqa: F821
        import pandas as pd
        import torch
        import torch.nn.functional as F

        x = self._checked(x, key)
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 1:
            raise UserError(f"{key}: values from {lo:.3g} to {hi:.3g}; the model "
                            "reconstructs values in [0, 1], as it trained on (pixels)")
        recon = torch.as_tensor(self.outputs(x, key=key)).reshape(len(x), -1)
        target = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).reshape(len(x), -1)
        return pd.DataFrame({
            "mse": ((recon - target) ** 2).mean(dim=1).numpy(),
            "bce": F.binary_cross_entropy(recon, target, reduction="none").mean(dim=1).numpy()})


def load_trained(source: str, tracking_uri: str = "sqlite:///mlflow.db") -> Trained:
    """The model of `source`, a trial's or a `final` run's id, or a registered
    model version `models:/NAME/VERSION` (what `final` registers), from the MLflow
    store at `tracking_uri`."""
    import torch

    from hypersweep.models.registry import get_builder
    from hypersweep.models.train import split_params

    from hypersweep.search.config import check_tracking_uri
    check_tracking_uri(tracking_uri, "--tracking-uri")      # a file store MLflow 3 refuses
    tracker = MlflowTracker(tracking_uri, create=False, key="--tracking-uri", reading=True)
    run = _run_of(tracker, source)
    role = run.data.tags.get(ROLE_TAG)
    parent = run.data.tags.get("mlflow.parentRunId")
    if role not in ("trial", "final") or not parent:
        raise UserError(f"SOURCE: run {run.info.run_id} is {_what(role)}; give a trial's run "
                        "id (hypersweep best STUDY --json), a final run's, or "
                        "models:/NAME/VERSION")
    state = run.data.tags.get("state", "COMPLETE")
    if state == "FAIL":
        raise UserError(f"SOURCE: run {run.info.run_id} is a failed trial's, with no trained "
                        f"model ({run.data.tags.get('failure_reason', 'failed')})")
    weights = "model.pt" if role == "trial" else "model/model.pt"
    blob = _read_bytes(tracker, run.info.run_id, weights)     # before any model is built
    trial_run = run.info.run_id if role == "trial" else _trial_of_final(tracker, run, parent)
    spec = TrialSpec.from_record(yaml.safe_load(tracker.read_text(trial_run, "trial.yaml")))
    data = json.loads(_read(tracker, parent, "data.json", "the study's data.json (a study "
                                                          "run before hypersweep wrote it)"))
    builder = get_builder(spec.model)
    kwargs, opts = split_params(spec.model, spec.params)
    try:
        model = builder.build(input_shape=tuple(data["input_shape"]),
                              n_outputs=data["n_outputs"], **kwargs)
        model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True))
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a builder of one's own, edited since the study
        raise UserError(f"SOURCE: the model {spec.model} built from run {run.info.run_id}'s "
                        f"hyperparameters does not take its weights (its code changed since "
                        f"it trained?): {type(e).__name__}: {first_line(e)}") from None
    return Trained(model.eval(), spec, data, run.info.run_id, final=role == "final",
                   state=state, epochs=int(run.data.tags.get("epochs", 0) or 0),
                   notes=_model_file_notes(tracker, parent, spec), precision=opts.precision)


def _model_file_notes(tracker: MlflowTracker, parent: str, spec: TrialSpec) -> tuple[str, ...]:
    """A line when the model's own file is not the one the study trained (its digest
    on the parent run): the weights go into the net the file builds now."""
    from hypersweep.search.sources import source_digests
    stored = tracker.client.get_run(parent).data.tags.get("source.model")
    now = source_digests(spec.model, {}).get("model")
    if stored is None or now == stored:
        return ()
    return (f"model: {spec.model.rpartition(':')[0]} changed since the study trained; the "
            "model is built by the file as it is now, with the weights it trained",)


def inputs_of(trained: Trained, path: Path, array: str = "x",
              keep: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """The model's inputs from new samples, and the columns that name them (`file`
    for images, `input` for a text file's sequences; none for rows and arrays, in
    their order): a CSV file's rows, made inputs as the training file's were (its
    means, stds and one-hot categories); an .npz archive's array `array`, as the
    training archive's was; for a model trained on an image folder, an image or a
    folder of them, read as the training images were; for a seq2seq model whose
    inputs are one-hot tokens, a text file of one sequence per line. `keep`: a CSV
    file's columns to name the rows by (an id), copied as they are."""
    if keep and not is_csv(path):
        raise UserError(f"--keep: copies a CSV file's columns; {path.name} is not one")
    x, names = _inputs(trained, path, array, keep)
    if len(x) == 0:
        raise UserError(f"--input: {path.name} holds no samples")
    return x, names         # finite: each reader checks its cells; Trained.predict, the rest


COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")     # what pandas opens by the name


def is_csv(path: Path) -> bool:
    """FILE.csv, or FILE.csv compressed (FILE.csv.gz), as training reads it too."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    return suffixes[-1:] == [".csv"] or (len(suffixes) == 2 and suffixes[0] == ".csv"
                                         and suffixes[1] in COMPRESSED)


def _inputs(trained: Trained, path: Path, array: str,
            keep: Sequence[str] = ()) -> tuple[np.ndarray, dict[str, list[Any]]]:
    layout = (trained.data.get("inputs") or {})
    suffix = path.suffix.lower()
    if trained.data["dataset"] == "images" and (path.is_dir() or suffix not in
                                                   (".csv", ".npz")):
        x, files = _image_inputs(path, trained.data)
        from hypersweep.models.data import printable_name
        return x, {"file": [printable_name(f) for f in files]}
    if suffix == ".txt" and trained.predict_task == "sequence_transduction":
        return _sequence_inputs(trained, path)
    from_csv = isinstance(layout, list)     # the model trained on a CSV file's columns
    if is_csv(path) or from_csv:
        if not is_csv(path):
            raise UserError(f"--input: {path.name}: the model trained on a CSV file's columns; "
                            "give a CSV file with them")
        if not from_csv:
            raise UserError(f"--input: {path.name}: a CSV file, but the model trained on "
                            f"'{trained.data['dataset']}', not on a CSV file's columns")
        if array != "x":
            raise UserError(f"--x: {array}: names an .npz archive's array; {path.name} is a "
                            "CSV file")
        options = trained.data.get("options") or {}
        frame = _read_frame(path, options.get("sep", ","), options.get("decimal", "."))
        for name in keep:
            if name not in frame.columns:
                raise unknown("column", name, frame.columns, key=f"--keep: {path.name}")
        return table_inputs(frame, layout, path, options.get("decimal", ".")), \
            {name: list(frame[name]) for name in keep}
    if suffix == ".npz":
        return _array_inputs(path, array, trained.data), {}
    txt = ", a .txt file of sequences (a seq2seq model)" \
        if trained.predict_task == "sequence_transduction" else ""
    raise UserError(f"--input: {path.name}: give a .csv file (a model that trained on one), "
                    f"an .npz archive{txt}, or images (a model that trained on an image folder)")


def _sequence_inputs(trained: Trained, path: Path) -> tuple[np.ndarray, dict[str, list[str]]]:
    """A text file's lines (blank ones skipped) as one-hot token sequences: each
    character a token where every token is one, else tokens split by spaces."""
    vocab, (steps, width) = trained.vocabulary, trained.data["input_shape"]
    if width != len(vocab):
        raise UserError(f"--input: {path.name}: the model's inputs are not one-hot tokens of "
                        f"its vocabulary ({width} values a step, {len(vocab)} tokens); give "
                        "an .npz archive shaped as its training inputs")
    if not path.is_file():
        raise UserError(f"--input: {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()     # a BOM: Notepad's
    except UnicodeDecodeError as e:
        raise UserError(f"--input: {path.name}: not UTF-8 text: {first_line(e)}") from None
    chars = all(len(t) == 1 for t in vocab)
    index = {t: i for i, t in enumerate(vocab)}
    rows, texts = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        # characters, spaces between them allowed where a space is no token
        tokens = [c for c in line.strip() if c != " " or " " in index] if chars \
            else line.split()
        unknown = sorted({t for t in tokens if t not in index})
        if unknown:
            named = ", ".join(map(repr, unknown[:3]))
            raise UserError(f"--input: {path.name} line {number}: {named} not in the model's "
                            f"vocabulary {''.join(vocab) if chars else vocab}")
        if len(tokens) != steps:
            raise UserError(f"--input: {path.name} line {number}: {len(tokens)} tokens; the "
                            f"model takes sequences of {steps}")
        rows.append([index[t] for t in tokens])
        texts.append(line.strip())
    x = np.eye(width, dtype=np.float32)[np.asarray(rows, dtype=np.int64).reshape(-1, steps)]
    return x, {"input": texts}


def _image_inputs(path: Path, data: Mapping[str, Any]) -> tuple[np.ndarray, list[str]]:
    """An image, or every image under a folder (nested folders too, in sorted
    order), read with the training images' size, channels and extensions."""
    from hypersweep.models.data import dataset_options
    from hypersweep.models.image_folder import _extensions, _files, _is_image, _read_all

    options = {name: hp.default for name, hp in dataset_options("images").items()}
    options.update(data.get("options") or {})
    exts = _extensions(options["extensions"])
    if path.is_dir():
        paths = sorted((p for p in _files(path) if _is_image(p.name, exts)),
                       key=lambda p: p.relative_to(path).parts)
        names = [str(p.relative_to(path)) for p in paths]
        if not paths:
            raise UserError(f"--input: {path} holds no images ({', '.join(exts)})")
    elif path.is_file():
        if not _is_image(path.name, exts):      # Pillow is offered only those formats
            raise UserError(f"--input: {path.name}: the model trained on images of the "
                            f"extensions {', '.join(exts)} (data.options.extensions); give "
                            "one of those")
        paths, names = [path], [path.name]
    else:
        raise UserError(f"--input: {path}: no such file or folder")
    try:
        return _read_all(paths, options["size"], options["channels"], exts), names
    except UserError as e:      # the loader's message names its option
        raise UserError(str(e).replace("data.options.root: ", "--input: ", 1)) from None


def table_inputs(frame: Any, layout: list[Mapping[str, Any]], path: Path,
                 decimal: str = ".", lines: bool = True) -> np.ndarray:
    """Rows of a table as inputs, column by column as `layout` (data.json's
    `inputs`) says: a number standardised by the training file's mean and std, a
    category one-hot over the training file's categories (one it did not have is
    an error: the model has no input for it). Numbers written as text (a
    DataFrame read with dtype=str) are read with `decimal`, the training file's
    decimal mark. Errors name a row as training does, `row 3 (line 4)`; without
    `lines` (a DataFrame, not a file), by its index."""
    import pandas as pd

    from hypersweep.models.tables import _column_values, _plain

    def where(position: int) -> str:
        return f"row {position + 1} (line {position + 2})" if lines else \
            f"the row of index {_plain(frame.index[position])!r}"

    missing = [c["column"] for c in layout if c["column"] not in frame.columns]
    if missing:
        raise UserError(f"--input: {path.name} has no column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))}; "
                        f"the model takes {', '.join(repr(c['column']) for c in layout)}")
    blocks = []
    for column in layout:
        name, series = column["column"], frame[column["column"]]
        # The first cell that is wrong is named, in the file's order: an empty one,
        # or one that is not a (finite) number
        empty = series.isna().to_numpy()
        gap = _first(empty)
        gap_error = UserError(f"--input: {path.name}: column '{name}' is empty in "
                              f"{where(gap)}") if gap < len(series) else None
        values = _column_values(series)
        if "one_hot" in column:
            if gap < len(series):
                raise gap_error
            categories = list(column["one_hot"])
            if all(isinstance(k, str) for k in categories):     # read as text in training
                values = series.astype(str).to_numpy(dtype=object)
            # By value, else as written: a true/false column that holds another value
            # is read as text, and its 'False' is the training file's False.
            written = {str(k): k for k in categories}
            known = [_plain(v) if _plain(v) in categories else written.get(str(_plain(v)), _NONE)
                     for v in values]
            bad = next((i for i, k in enumerate(known) if k is _NONE), None)
            if bad is not None:
                first = str(_plain(values[bad]))
                others = sorted({str(_plain(v)) for v, k in zip(values, known)
                                 if k is _NONE} - {first})
                more = f" (and {', '.join(map(repr, others[:3]))}{', ...' * (len(others) > 3)})" \
                    if others else ""
                raise UserError(f"--input: {path.name}: column '{name}' holds {first!r} in "
                                f"{where(bad)}{more}, which the training file did not; the "
                                f"model knows {categories}")
            blocks.append(np.array([[k == c for c in categories] for k in known]))
            continue
        if values.dtype.kind not in "iuf":
            text = series.astype(str).str.strip()
            parsed = pd.to_numeric(text.str.replace(decimal, ".", regex=False) if decimal != "."
                                   else text, errors="coerce").to_numpy(dtype=np.float64)
            bad = _first(np.isnan(parsed) & ~empty)
            if gap < bad:
                raise gap_error
            if bad < len(series):
                value = str(series.iloc[bad])
                other = "," if decimal == "." else "."
                comma = pd.to_numeric(value.strip().replace(other, "."), errors="coerce")
                hint = (f" (written with the decimal mark '{other}'; the training file's is "
                        f"'{decimal}')" if np.isfinite(comma) else "")
                raise UserError(f"--input: {path.name}: column '{name}' holds {value!r} in "
                                f"{where(bad)}, not a number, as the column was in the "
                                f"training file{hint}")
            values = parsed
        values = values.astype(np.float64)
        infinite = _first(~np.isfinite(values) & ~empty)
        if gap < infinite:
            raise gap_error
        if infinite < len(series):
            raise UserError(f"--input: {path.name}: column '{name}' holds {values[infinite]} "
                            f"in {where(infinite)}, not a finite number")
        blocks.append(((values - column["mean"]) / column["std"])[:, None])
    return np.concatenate(blocks, axis=1).astype(np.float32)


def _first(mask: np.ndarray) -> int:
    """The first position `mask` holds, or its length where it holds none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else len(mask)


def _read_frame(path: Path, sep: str = ",", decimal: str = ".") -> Any:
    """The file read as the training file was (its `sep` and `decimal`)."""
    import pandas as pd

    from hypersweep.models.tables import READ_AS

    if not path.is_file():
        raise UserError(f"--input: {path}: no such file")
    try:
        frame = pd.read_csv(path, sep=sep, decimal=decimal, **READ_AS)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"--input: {path.name}: not a CSV file pandas reads: "
                        f"{first_line(e)}") from None
    if frame.empty:
        raise UserError(f"--input: {path.name} has a header but no rows")
    from hypersweep.models.tables import duplicate_column
    twice = duplicate_column(path, frame, sep)
    if twice:
        raise UserError(f"--input: {path.name}: {twice}")
    return frame


def _array_inputs(path: Path, array: str, data: Mapping[str, Any]) -> np.ndarray:
    from hypersweep.models.tables import _array, _npz_inputs

    if not path.is_file():
        raise UserError(f"--input: {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if array not in archive.files:
                raise UserError(f"--x: no array '{array}' in {path.name}; it holds "
                                f"{', '.join(archive.files) or 'none'}")
            # as the training archive's were read: numbers, finite (a NaN named as one)
            x = _array(archive, array, "x", path)
    except UserError as e:
        raise UserError(str(e).replace("data.options.x: ", "--input: ", 1)) from None
    except (OSError, ValueError) as e:
        raise UserError(f"--input: {path.name}: not an .npz archive NumPy reads: "
                        f"{first_line(e)}") from None
    # (n, steps, features) as the model takes them: sequences (an rnn on seq_digits),
    # not one-channel images
    sequences = bool((data.get("options") or {}).get("sequences")) or (
        x.ndim == 3 and list(x.shape[1:]) == list(data["input_shape"]))
    try:
        out = _npz_inputs(x, array, path, sequences)
    except UserError as e:      # the loader's message names the study's key
        raise UserError(str(e).replace("data.options.x: ", "--input: ", 1)) from None
    expected = tuple(data["input_shape"])
    if tuple(out.shape[1:]) != expected:    # said as the file holds them, not as made (n, 1, H, W)
        raise UserError(f"--input: array '{array}' in {path.name} holds samples of shape "
                        f"{tuple(x.shape[1:])}; the model takes {expected}, as the study's "
                        "data (an array of n samples)")
    return out


def _run_of(tracker: MlflowTracker, source: str) -> Any:
    from mlflow.exceptions import MlflowException

    where = without_password(tracker.uri)
    if source.startswith("models:/") and not _MODEL_URI.match(source):
        raise UserError(f"SOURCE: {source}: give a registered model's version: "
                        "models:/NAME/VERSION (final prints it), models:/NAME/latest or "
                        "models:/NAME@ALIAS")
    match = _MODEL_URI.match(source)
    try:
        if match:
            source = _version_of(tracker, match["name"], match["version"], match["alias"]).run_id
        return tracker.client.get_run(source)
    except UserError:
        raise
    except MlflowException as e:
        if e.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise UserError(f"--tracking-uri: {where}: {first_line(e)}") from None
        what = f"no registered model version {source}" if match else f"no run {source}"
        raise UserError(f"SOURCE: {what} in {where}; give a trial's run id (hypersweep best "
                        "STUDY --json), a final run's, or models:/NAME/VERSION") from None


def _version_of(tracker: MlflowTracker, name: str, version: str | None,
                alias: str | None) -> Any:
    """The registered model version a models:/ URI names: by number, the latest
    (the highest number), or by alias."""
    client = tracker.client
    if alias:
        return client.get_model_version_by_alias(name, alias)
    if version == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise UserError(f"SOURCE: no registered model {name} in "
                            f"{without_password(tracker.uri)} (hypersweep final registers a "
                            "study's as the study's name)")
        return max(versions, key=lambda v: int(v.version))
    return client.get_model_version(name, version)


def _what(role: str | None) -> str:
    return {"study": "a study's parent run"}.get(role or "", "not a run of hypersweep's")


def _trial_of_final(tracker: MlflowTracker, run: Any, parent: str) -> str:
    """The run of the trial a final run retrained: its architecture's record."""
    number = int(run.data.tags["trial"])
    runs = tracker.trial_runs(parent).get(number)
    if not runs:
        raise UserError(f"SOURCE: the final run {run.info.run_id} retrained trial {number}, "
                        "whose run is not in this store")
    return runs[0]


def _read(tracker: MlflowTracker, run_id: str, path: str, what: str) -> str:
    try:
        return tracker.read_text(run_id, path)
    except UserError:
        raise UserError(f"SOURCE: no {what} on run {run_id}") from None


def _read_bytes(tracker: MlflowTracker, run_id: str, path: str) -> bytes:
    import tempfile

    from mlflow.exceptions import MlflowException
    try:
        with tempfile.TemporaryDirectory(prefix="hypersweep-") as tmp:
            return Path(tracker.client.download_artifacts(run_id, path, tmp)).read_bytes()
    except MlflowException as e:
        raise UserError(f"SOURCE: run {run_id} has no {path}: {first_line(e)}") from None
