"""Users' own data from files: `csv` (a table with a header row) and `npz` (NumPy
arrays `x` and `y`, as `np.savez` writes them).

`csv`: the target is one column (`target`, by default the last), the features the
others (`features`, comma-separated, to pick some). Numeric feature columns are
standardised to mean 0 and std 1 (a constant column becomes 0) and text or
true/false columns are one-hot encoded, a 0/1 column per distinct value in sorted
order. The means, stds and categories come from all rows, before the split, as
scikit-learn's diabetes data are standardised: every trial sees the same inputs,
and the validation and test rows take a part in the statistics. A missing value
is an error naming its column and row; nothing is imputed.

`npz`: `x` is (n, features), images (n, C, H, W) or (n, H, W) (given a channel
axis), of floats or integers; uint8 values are scaled to [0, 1], the rest used as
they are. `y` is (n,) (or (n, k) regression targets). Arrays of Python objects
are never unpickled.

`task`: `auto` picks classification for a text or true/false target, regression
for one with non-integer numbers, and for integers (3, or 3.0) classification
when there are at most 20 distinct values, else regression. Class labels are the
distinct values in sorted order; regression targets are standardised to mean 0
and std 1 (an MSE of 1.0 is the predict-the-mean baseline), as `diabetes`'s.
"""
from __future__ import annotations

import codecs
import re
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hypersweep.models.data import MAX_VALUES, RawData, _frozen, dataset
from hypersweep.models.errors import UserError, first_line, unknown

Task = Literal["auto", "classification", "regression"]
MIN_ROWS = 10            # fewer cannot be split into train, val and test sensibly
MAX_AUTO_CLASSES = 20    # auto: integer targets with more distinct values are regressed


@dataset("csv")
def csv_table(path: str = "", target: str = "", features: str = "", task: Task = "auto",
              sep: str = ",", decimal: str = ".", exclude: str = "") -> RawData:
    """A CSV file with a header row: `target` column (default: the last), `features`
    (comma-separated names; default: every other column but a row index), or
    `exclude` (comma-separated names left out of that default: an id, a date),
    `task` auto, classification or regression, `sep` the separator and `decimal`
    the decimal mark (one character each)."""
    file = _file(path, "a CSV file", "data/train.csv")
    frame = _read_csv(file, _checked_sep(sep), _checked_decimal(decimal, sep), target)
    label = _target_column(frame, target, file, sep)
    columns, index = _feature_columns(frame, features, label, exclude)
    _check_rows(len(frame), file, "data rows")
    for column in (*columns, label):
        _check_present(frame[column], column, file, is_target=column == label)
    targets = _column_values(frame[label])
    y, task_name, classes, task_note = _target(targets, task, f"column '{label}'",
                                               "data.options.target")
    x, inputs_note, layout = _encode(frame, columns, index, sep)
    notes = (task_note,) if task == "auto" else ()
    meta = {"inputs": layout, "target": _target_meta(label, targets, task_name, classes)}
    return _frozen(RawData(x, y, task=task_name, class_names=classes,
                           notes=notes + (inputs_note,), meta=meta))


@dataset("npz")
def npz_arrays(path: str = "", x: str = "x", y: str = "y", task: Task = "auto",
               sequences: bool = False) -> RawData:
    """A NumPy .npz archive holding inputs `x` (n, features), (n, C, H, W) or
    (n, H, W), and targets `y` (n,); `x` and `y` name the arrays, `task` as csv's.
    `sequences`: `x` (n, steps, features) stays so, for recurrent nets, rather than
    be read as one-channel images."""
    file = _file(path, "an .npz archive", "data/train.npz")
    inputs, targets = _read_npz(file, x, y)
    if len(targets) != len(inputs):
        raise UserError(f"data.options.y: array '{y}' in {file} has {len(targets)} entries "
                        f"and '{x}' {len(inputs)} samples; they must be as many")
    _check_rows(len(inputs), file, "samples")
    labels, task_name, classes, task_note = _target(targets, task, f"array '{y}'",
                                                    "data.options.y")
    if sequences and inputs.ndim != 3:
        raise UserError(f"data.options.sequences: array '{x}' in {file} is {inputs.shape}; "
                        "sequences are (n, steps, features)")
    scale = "divided by 255 (uint8)" if inputs.dtype == np.uint8 else "as stored"
    meta = {"inputs": {"array": x, "values": scale},
            "target": _target_meta(y, targets, task_name, classes)}
    return _frozen(RawData(_npz_inputs(inputs, x, file, sequences), labels, task=task_name,
                           class_names=classes, notes=(task_note,) if task == "auto" else (),
                           meta=meta))


# ---------------------------------------------------------------- files

def _file(path: str, what: str, example: str) -> Path:
    if not path:
        raise UserError(f"data.options.path: required: {what} to read, e.g. "
                        f"options: {{path: {example}}}")
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"data.options.path: {file} is a directory; name {what} in it")
    if not file.is_file():
        raise UserError(f"data.options.path: no such file: {file}")
    return file


def _checked_sep(sep: str) -> str:
    if len(sep) != 1:
        raise UserError(f"data.options.sep: must be one character, such as ',', ';' or a "
                        f"tab (\"\\t\" in double quotes in YAML); got {sep!r}")
    return sep


def _checked_decimal(decimal: str, sep: str) -> str:
    if len(decimal) != 1 or decimal == sep:
        raise UserError(f"data.options.decimal: must be one character other than sep, such "
                        f"as '.' or ','; got {decimal!r}")
    return decimal


# How a CSV file is read, for training and predict alike. utf-8-sig: a byte-order
# mark (Excel writes one) is not part of the first name; skipinitialspace: the
# spaces after each separator (`a, b, label`) are not part of names or values.
READ_AS = {"encoding": "utf-8-sig", "skipinitialspace": True}


def _read_csv(file: Path, sep: str, decimal: str = ".", target: str = ""):
    import pandas as pd

    try:
        frame = pd.read_csv(file, sep=sep, decimal=decimal, low_memory=False, **READ_AS)
    except UnicodeDecodeError:
        raise UserError(f"data.options.path: {file} is not UTF-8: {_bad_byte(file)}; save "
                        "it as UTF-8 text") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"data.options.path: {file} is empty; expected a header row of "
                        "column names, then a row per sample") from None
    except (pd.errors.ParserError, ValueError) as e:
        raise UserError(f"data.options.path: cannot parse {file} as CSV with sep {sep!r}: "
                        f"{first_line(e)}") from None
    except OSError as e:
        raise UserError(f"data.options.path: cannot read {file}: {e.strerror or e}") from None
    frame.columns = [str(c) for c in frame.columns]
    _check_header(file, frame, sep, decimal, target)
    twice = duplicate_column(file, frame, sep)
    if twice:
        raise UserError(f"data.options.path: {file}: {twice}")
    return frame


def _check_header(file: Path, frame, sep: str, decimal: str, target: str) -> None:
    """A first row of numbers only is data, not names: the file has no header row,
    and its first sample would silently name the columns (and be lost). Unless the
    target is named by one of those numbers: then the names are the user's."""
    names = list(frame.columns)

    def number(name: str) -> bool:
        try:
            float(name.replace(decimal, "."))
        except ValueError:
            return False
        return True

    if all(number(c) for c in names) and target not in names:
        first = _header_cells(file, sep)        # as written: pandas renames a repeated one
        shown = ", ".join(first[:4]) + (", ..." if len(first) > 4 else "")
        raise UserError(f"data.options.path: {file} has no header row, it seems: its first "
                        f"row ({shown}) holds only numbers, which would name the columns; "
                        "add a first row of column names (numbers that are the names: "
                        "name the target column, data.options.target)")


def duplicate_column(file: Path, frame, sep: str) -> str | None:
    """A name the file's header gives two columns, in words, or None. pandas reads
    the second `a` as `a.1`: the target or a feature named `a` would be the
    first of them, the other an input of its own, without a word."""
    import re

    names = set(frame.columns)
    if not any(re.sub(r"\.\d+$", "", n) in names and re.fullmatch(r".+\.\d+", n)
               for n in names):
        return None
    header = _header_cells(file, sep)
    for i, name in enumerate(header):
        if name in header[:i]:
            return (f"the header names column {name!r} twice (columns {header.index(name) + 1} "
                    f"and {i + 1}); give each column a name of its own")
    return None


def _header_cells(file: Path, sep: str) -> list[str]:
    """The first row's cells as the file writes them (pandas renames a repeated name
    `a` to `a.1`, and reads `0` as a number)."""
    import pandas as pd

    return list(pd.read_csv(file, sep=sep, header=None, nrows=1, dtype=str,
                            keep_default_na=False, **READ_AS).iloc[0])


def _bad_byte(file: Path) -> str:
    data = file.read_bytes()
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError as e:
        return f"byte 0x{data[e.start]:02x} at offset {e.start} does not decode"
    return "it does not decode"


def _target_column(frame, target: str, file: Path, sep: str) -> str:
    names = list(frame.columns)
    if target and target not in names:
        raise unknown("column", target, names, key="data.options.target")
    if len(names) < 2:
        others = [s for s in ",;\t|" if s != sep and s in names[0]]
        hint = f"; its header holds {others[0]!r}: if that separates the columns, set " \
               f"data.options.sep: {others[0]!r}" if others else ""
        raise UserError(f"data.options.path: {file} has a single column ({names[0]!r}), the "
                        f"target, and no features{hint}")
    return target or names[-1]


def _feature_columns(frame, features: str, target: str,
                     exclude: str = "") -> tuple[list[str], list[str]]:
    """The input columns, and the row-index columns left out of them: a column with
    no name in the header (pandas calls it `Unnamed: 0`), as `DataFrame.to_csv`
    writes the index. As an input, an index sorted by the target gives it away.
    `exclude`: columns left out of the default (every column but the target)."""
    left_out = _column_names(frame, exclude, target, "exclude")
    if left_out and features.strip():
        raise UserError("data.options.exclude: give features (the inputs) or exclude (the "
                        "columns left out of them), not both")
    if not features.strip():
        index = [c for c in frame.columns if c != target and re.fullmatch(r"Unnamed: \d+", c)]
        inputs = [c for c in frame.columns if c != target and c not in index + left_out]
        if not inputs:
            raise UserError(f"data.options.exclude: leaves no input column beside the target "
                            f"'{target}'")
        return inputs, index
    return _column_names(frame, features, target, "features"), []


def _column_names(frame, listed: str, target: str, option: str) -> list[str]:
    """The columns an option names (comma-separated), each once, none the target."""
    key = f"data.options.{option}"
    names = [f.strip() for f in listed.split(",") if f.strip()]
    for name in names:
        if name not in frame.columns:
            raise unknown("column", name, frame.columns, key=key)
        if name == target:
            raise UserError(f"{key}: '{name}' is the target (data.options.target); list only "
                            "input columns")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise UserError(f"{key}: '{repeated}' is listed twice")
    return names


def _check_rows(n: int, file: Path, what: str) -> None:
    if n < MIN_ROWS:
        has = f"has {n} {what}" if n else f"has no {what}"
        raise UserError(f"data.options.path: {file} {has}; a study needs at least {MIN_ROWS} "
                        "to split into train, val and test")


def _check_present(series, column: str, file: Path, is_target: bool) -> None:
    """No missing (NA, empty) or infinite value in a column used: the first one's row
    is named, counted from 1 after the header (line row + 1 of the file)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    missing = series.isna().to_numpy()
    what = "a missing value (an empty cell, NA, NaN, null, ...)"
    if not missing.any() and is_numeric_dtype(series) and not is_bool_dtype(series):
        missing = ~np.isfinite(series.to_numpy(dtype=np.float64))
        what = "an infinite value"
    if missing.any():
        row = int(np.argmax(missing)) + 1
        drop = "" if is_target else ", or leave the column out (data.options.exclude)"
        raise UserError(f"data.options.path: column '{column}' of {file} has {what} in row "
                        f"{row} (line {row + 1}; {_count(missing.sum(), 'row')} in all); "
                        f"nothing is imputed: fill or drop those rows{drop}")


def _count(n: int, what: str) -> str:
    return f"1 {what}" if n == 1 else f"{n} {what}s"


def _column_values(series) -> np.ndarray:
    """A column as NumPy: bool, int64, float64, or str objects for text."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_bool_dtype(series):
        return series.to_numpy(dtype=bool)
    if is_numeric_dtype(series):
        return series.to_numpy()
    return series.astype(str).to_numpy(dtype=object)


def _encode(frame, columns: list[str], index: list[str],
            sep: str = ",") -> tuple[np.ndarray, str, list[dict[str, Any]]]:
    """The inputs (n, width) float32: numeric columns standardised, others one-hot;
    a note that says which columns became how many inputs; and, in input order,
    how each column became inputs (its mean and std, or its categories)."""
    if not columns:
        raise UserError("data.options.features: no input column is left beside the target")
    values = {c: _column_values(frame[c]) for c in columns}
    numeric = {c: v.dtype.kind in "iuf" for c, v in values.items()}
    for c in columns:
        if values[c].dtype.kind == "O":       # text (true/false columns are categories)
            _check_text_column(values[c], c, sep)
    categories = {c: np.unique(v) for c, v in values.items() if not numeric[c]}
    widths = {c: len(categories[c]) if c in categories else 1 for c in columns}
    if len(frame) * sum(widths.values()) > MAX_VALUES:
        widest = max(widths, key=widths.get)
        raise UserError(f"data.options.features: {len(frame)} rows of {sum(widths.values())} "
                        f"inputs are more than {MAX_VALUES} values; one-hot, column "
                        f"'{widest}' alone makes {widths[widest]}: leave it out")
    blocks, layout = [], []
    for c in columns:
        v = values[c]
        if numeric[c]:
            v = v.astype(np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                std = v.std()
                block = (v - v.mean()) / (std if std > 0 else 1.0)
            # Past about 1e154 the squares overflow: std inf made every value 0, silently.
            if not (np.isfinite(std) and np.isfinite(block).all()):
                raise UserError(f"data.options.features: column '{c}' holds numbers too large "
                                f"to standardise (up to {np.abs(v).max():g})")
            blocks.append(block[:, None])
            layout.append({"column": c, "mean": float(v.mean()), "std": float(std) or 1.0})
        else:
            blocks.append(v[:, None] == categories[c][None, :])
            layout.append({"column": c, "one_hot": [_plain(k) for k in categories[c]]})
    shown = [c if numeric[c] else f"{c} (one-hot, {widths[c]})" for c in columns]
    listed = ", ".join(shown[:8]) + (f" and {len(shown) - 8} more" if len(shown) > 8 else "")
    width = sum(widths.values())
    note = f"data.options.features: {width} input{'s' if width > 1 else ''} from {listed}"
    if index:
        note += f"; {', '.join(repr(c) for c in index)} left out (no name: a row index)"
    return np.concatenate(blocks, axis=1).astype(np.float32), note, layout


def _plain(value: Any) -> Any:
    """A NumPy scalar as JSON takes it."""
    return value.item() if isinstance(value, np.generic) else value


def _target_meta(name: str, values: np.ndarray, task: str,
                 classes: tuple[str, ...]) -> dict[str, Any]:
    """How the target was read: its classes, in label order, or the mean and std
    a prediction is to be scaled back with (prediction * std + mean)."""
    if task == "classification":
        return {"name": name, "classes": list(classes)}
    v = values.astype(np.float64).reshape(len(values), -1)
    return {"name": name, "mean": v.mean(axis=0).tolist(), "std": v.std(axis=0).tolist()}


NUMBER = re.compile(r"\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*")
MOSTLY = 0.9          # a text column whose values are this share numbers holds numbers
DATE = re.compile(r"\s*\d{4}[-/]\d{1,2}[-/]\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2})?.*)?\s*")


def _check_text_column(values: np.ndarray, column: str, sep: str = ",") -> None:
    """A text column one-hot encoded must be categories: numbers that pandas read
    as text (a decimal comma, a stray `?`) or an identifier would make an input per
    row, which says nothing of new rows. `sep`: the file's separator."""
    key = f"data.options.features: column '{column}'"
    numbers = np.array([bool(NUMBER.fullmatch(v)) for v in values])
    if numbers.mean() >= MOSTLY:
        comma = next((v for v in values if "," in v), None)
        if numbers.all() and comma is not None and sep == ",":
            # Quoted, as a comma-separated file must quote them: a decimal comma, or a
            # thousands separator ('7,700'), which pandas cannot take beside sep ','.
            raise UserError(f"{key} holds numbers with a comma in them (such as "
                            f"{comma.strip()!r}), a decimal comma or a thousands separator, "
                            "which a comma-separated file cannot have read as numbers: write "
                            "them without it (7700, or 7.7), or save the file with sep ';' "
                            "and set data.options.sep: ';' and data.options.decimal: ','")
        if numbers.all() and comma is not None:
            raise UserError(f"{key} holds numbers written with a decimal comma (such as "
                            f"{comma.strip()!r}); set data.options.decimal: ','")
        row = int(np.argmin(numbers))
        odd = sorted({v for v, ok in zip(values, numbers) if not ok})
        shown = ", ".join(repr(v) for v in odd[:3]) + (" ..." if len(odd) > 3 else "")
        raise UserError(f"{key} holds numbers, and text ({shown}; the first in row "
                        f"{row + 1}), so it reads as text; fill or drop those rows, or leave "
                        "the column out (data.options.exclude)")
    distinct = len(np.unique(values))
    if distinct > max(MAX_AUTO_CLASSES, len(values) // 2):
        what = "a different value in every row (an identifier?)" if distinct == len(values) \
            else f"{distinct} different values in {len(values)} rows"
        dates = DATE.fullmatch(str(values[0])) is not None
        what += " (dates: turn them into numbers, such as days or a month, in a column of " \
                "their own)" if dates else ""
        raise UserError(f"{key} holds text with {what}; one-hot, each value would be an "
                        "input of its own that says nothing of new rows: leave it out "
                        "(data.options.exclude)")


def _read_npz(file: Path, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with file.open("rb") as f:
            head = f.read(6)
    except OSError as e:
        raise UserError(f"data.options.path: cannot read {file}: {e.strerror or e}") from None
    if head == b"\x93NUMPY":
        raise UserError(f"data.options.path: {file} is an .npy file of one array; save x and "
                        "y together with np.savez(path, x=x, y=y)")
    if not head:
        raise UserError(f"data.options.path: {file} is empty; expected an .npz archive")
    if not head.startswith(b"PK"):
        raise UserError(f"data.options.path: {file} is not an .npz archive (a zip of .npy "
                        "arrays, as np.savez writes)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            return _array(archive, x, "x", file), _array(archive, y, "y", file)
    except UserError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise UserError(f"data.options.path: cannot read {file} as an .npz archive: "
                        f"{first_line(e)}") from None


def _array(archive, name: str, option: str, file: Path) -> np.ndarray:
    key = f"data.options.{option}"
    if not archive.files:
        raise UserError(f"data.options.path: {file} holds no arrays; expected x and y")
    if name not in archive.files:
        raise unknown("array", name, archive.files, key=key)
    try:
        a = archive[name]
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise
        raise UserError(f"{key}: array '{name}' in {file} holds Python objects, which are "
                        "not unpickled (it could run code); save an array of numbers"
                        + (" or strings" if option == "y" else "")) from None
    kinds = "biuf" + ("US" if option == "y" else "")
    if a.dtype.kind not in kinds:
        raise UserError(f"{key}: array '{name}' in {file} holds {a.dtype} values; "
                        f"{option} must hold numbers (float or integer)"
                        + (" or strings" if option == "y" else ""))
    if a.ndim == 0:
        raise UserError(f"{key}: array '{name}' in {file} is a single value; expected one "
                        "entry per sample")
    if len(a) == 0:
        raise UserError(f"{key}: array '{name}' in {file} holds no samples (its shape is "
                        f"{a.shape})")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            what = "NaN" if np.isnan(a[i]).any() else "an infinite value"
            raise UserError(f"{key}: array '{name}' in {file} holds {what} in sample {i} "
                            f"(counted from 0; {_count(bad.sum(), 'sample')} in all); every "
                            "value must be a finite number")
    return a.astype(str) if a.dtype.kind == "S" else a


def _npz_inputs(x: np.ndarray, name: str, file: Path, sequences: bool = False) -> np.ndarray:
    """(n, features) or (n, C, H, W) float32; uint8 scaled to [0, 1]."""
    if x.ndim > 4:
        raise UserError(f"data.options.x: array '{name}' in {file} is {x.shape}; expected "
                        "(n, features), (n, H, W) or (n, C, H, W)")
    if x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        raise UserError(f"data.options.x: array '{name}' in {file} is {x.shape}, images "
                        "with their channels last, it seems; save them as (n, C, H, W): "
                        "x.transpose(0, 3, 1, 2)")
    out = x / np.float32(255.0) if x.dtype == np.uint8 else x
    if x.ndim == 1:
        out = out[:, None]
    elif x.ndim == 3 and not sequences:
        out = out[:, None]          # (n, H, W): one channel
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(out, dtype=np.float32)
    if not np.isfinite(out).all():    # float64 values past float32's range
        raise UserError(f"data.options.x: array '{name}' in {file} holds values beyond "
                        "float32's range (about 3.4e38)")
    return out


# ---------------------------------------------------------------- targets

def _target(values: np.ndarray, task: str, what: str,
            key: str) -> tuple[np.ndarray, str, tuple[str, ...], str]:
    """(y, task, class names, a note of what `auto` chose): int64 labels of the
    sorted distinct values, or standardised float32 targets (n, k). One-hot rows
    (0/1, one 1 each) are class labels."""
    kind = values.dtype.kind
    text = kind in "OUSb"
    one_hot = _one_hot_rows(values)
    if one_hot is not None and task != "regression":
        values = one_hot
    elif task != "regression":
        _check_nearly_one_hot(values, what, key)
    whole = text or kind in "iu" or bool(np.all(values == np.round(values)))
    if task == "auto":
        if text or one_hot is not None:
            task = "classification"
        elif values.ndim > 1 and values.shape[1] > 1:
            task = "regression"
        elif whole and len(np.unique(values)) <= MAX_AUTO_CLASSES:
            task = "classification"
        else:
            task = "regression"
    values = values[:, 0] if values.ndim > 1 and values.shape[1] == 1 else values
    if task == "classification":
        if values.ndim > 1:
            raise UserError(f"data.options.task: classification needs one label per sample; "
                            f"{what} is {values.shape}")
        if not whole:
            example = values[values != np.round(values)][0]
            raise UserError(f"data.options.task: classification needs class labels, but "
                            f"{what} holds numbers that are not integers (such as {example:g});"
                            f" use task: regression (or auto)")
        labels, task, names = _classes(values, what, key)
        other = "" if text or one_hot is not None else "; set task: regression to regress it"
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        note = (f"data.options.task: auto reads {what} as classification, {len(names)} "
                f"classes ({shown}){other}")
        return labels, task, names, note
    if text:
        sort = "true/false values" if kind == "b" else f"text (such as {values[0]!r})"
        raise UserError(f"data.options.task: regression needs numbers, but {what} holds "
                        f"{sort}; use task: classification (or auto)")
    y = _standardised(values.astype(np.float64), what, key)
    other = "; set task: classification to classify it" if whole and y.shape[1] == 1 else ""
    targets = f"{y.shape[1]} targets" if y.shape[1] > 1 else "1 target"
    note = f"data.options.task: auto reads {what} as regression, {targets}{other}"
    return y, "regression", (), note


def _one_hot_rows(values: np.ndarray) -> np.ndarray | None:
    """The class of each row of one-hot targets (n, k), k > 1; else None."""
    if values.ndim != 2 or values.shape[1] < 2 or values.dtype.kind not in "biuf":
        return None
    if not (np.isin(values, (0, 1)).all() and (values.sum(axis=1) == 1).all()):
        return None
    return values.argmax(axis=1)


def _check_nearly_one_hot(values: np.ndarray, what: str, key: str) -> None:
    """0/1 targets (n, k) whose rows are one-hot but for a few (a row of zeros, or
    of two 1s): classes, mistyped, which `auto` read as k regression targets and
    classification refused as not one label per sample."""
    if values.ndim != 2 or values.shape[1] < 2 or values.dtype.kind not in "biuf" \
            or not np.isin(values, (0, 1)).all():
        return
    bad = np.flatnonzero(values.sum(axis=1) != 1)
    if len(bad) > (1 - MOSTLY) * len(values):
        return      # 0/1 targets, not classes: several labels a row
    row = "[" + ", ".join(f"{v:g}" for v in values[bad[0]]) + "]"
    raise UserError(f"{key}: {what} is one-hot but for row {bad[0]} (counted from 0; "
                    f"{len(bad)} row{'s' if len(bad) > 1 else ''} in all), which holds {row}: "
                    "a class label is a single 1 in its row; fix those rows, or set "
                    f"data.options.task: regression to regress its {values.shape[1]} columns")


def _classes(values: np.ndarray, what: str,
             key: str) -> tuple[np.ndarray, str, tuple[str, ...]]:
    distinct, labels, counts = np.unique(values, return_inverse=True, return_counts=True)
    names = tuple(_name(v) for v in distinct)
    if len(distinct) < 2:
        raise UserError(f"{key}: {what} holds a single class ({names[0]!r}) in every row; "
                        "classification needs at least 2")
    lone = [n for n, c in zip(names, counts) if c < 2]
    if lone:
        shown = ", ".join(repr(n) for n in lone[:5]) + (
            f" and {len(lone) - 5} more" if len(lone) > 5 else "")
        raise UserError(f"{key}: in {what}, {'classes' if len(lone) > 1 else 'class'} {shown} "
                        f"{'have' if len(lone) > 1 else 'has'} a single sample; a stratified "
                        "split needs at least 2 of each class (and val or test holds one of "
                        "a class only where its fraction of the class's samples rounds to "
                        "one)")
    return labels.reshape(-1).astype(np.int64), "classification", names


def _name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))       # 3.0 -> "3": labels saved as floats
    return str(value)


def _standardised(values: np.ndarray, what: str, key: str) -> np.ndarray:
    values = values.reshape(len(values), -1)
    with np.errstate(over="ignore", invalid="ignore"):
        std = values.std(axis=0)
        y = (values - values.mean(axis=0)) / std
    if not (std > 0).all():
        raise UserError(f"{key}: {what} holds the same value in every row; there is nothing "
                        "to regress")
    if not (np.isfinite(std).all() and np.isfinite(y).all()):     # std inf: every y 0
        raise UserError(f"{key}: {what} holds numbers too large to standardise (up to "
                        f"{np.abs(values).max():g})")
    return y.astype(np.float32)
