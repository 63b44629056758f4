"""Datasets: a table of loaders of raw arrays, and one function that splits them.

Loaders ship with installed packages or generate their data, so a study runs
offline. A loader's keyword arguments are the dataset's options (`data.options`
in a study); raw arrays are cached in-process because one process runs many trials.
The split depends on `split_seed` only, never on a trial's seed, so every trial of
a study sees the same train/val/test rows.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hypersweep.models.errors import UserError, check_at_least, unknown
from hypersweep.models.registry import HParam, check_value, hparams_of


@dataclass(frozen=True, eq=False)   # eq=False: tensors do not compare to one bool
class Splits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]     # one sample's shape, e.g. (1, 8, 8)
    n_outputs: int                   # classes, or regression targets
    task: str                        # a task name: "classification", "regression", ...
    name: str
    class_names: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()      # what the loader decided that the user may not expect
    meta: Mapping[str, Any] = field(default_factory=dict)     # RawData.meta


@dataclass(frozen=True, eq=False)
class RawData:
    """What a loader returns: every sample, before splitting."""

    x: np.ndarray                    # float32, (n, *input_shape)
    y: np.ndarray                    # int64 labels or tokens, or float32 targets
    task: str = "classification"
    # Classes, or the token vocabulary of sequence tasks; empty for regression.
    class_names: tuple[str, ...] = ()
    # Too few samples to split (xor's four points): train = val = test = all of them.
    unsplit: bool = False
    # What the loader decided that the user may not expect (the task `auto` took,
    # the columns left out), one line each, keyed: `validate` and `run` note them.
    notes: tuple[str, ...] = ()
    # How the files became inputs and targets (a table's columns, means and stds,
    # categories), as JSON: what it takes to feed the trained model new data.
    meta: Mapping[str, Any] = field(default_factory=dict)


Loader = Callable[..., RawData]
_LOADERS: dict[str, Loader] = {}


def dataset(name: str) -> Callable[[Loader], Loader]:
    """Register a loader; its results are cached per option values."""
    def decorate(fn: Loader) -> Loader:
        if name in _LOADERS:
            raise ValueError(f"dataset '{name}' is already registered")
        cached = functools.lru_cache(maxsize=8)(fn)
        _LOADERS[name] = cached
        return cached
    return decorate


def dataset_names() -> list[str]:
    return sorted(_LOADERS)


def dataset_options(name: str) -> dict[str, HParam]:
    """The options a dataset accepts in `data.options`, with types and defaults."""
    return hparams_of(_loader(name))


def load_dataset(name: str, *, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 split_seed: int = 0, **options: Any) -> Splits:
    loader = _loader(name)
    _check_fractions(val_fraction, test_fraction)
    _check_split_seed(split_seed)
    options = _checked_options(name, options)
    raw = loader(**options)
    if raw.unsplit:
        every = np.arange(len(raw.y))
        train, val, test = every, every, every
    else:
        train, val, test = _split(raw, val_fraction, test_fraction, split_seed,
                                  _size_of(name, options))
    take = lambda a, idx: torch.from_numpy(np.ascontiguousarray(a[idx]))  # noqa: E731
    n_outputs = len(raw.class_names) if raw.class_names else (
        1 if raw.y.ndim == 1 else raw.y.shape[1])
    notes = raw.notes if raw.unsplit else raw.notes + _missing_classes(raw, val, test)
    return Splits(take(raw.x, train), take(raw.y, train), take(raw.x, val), take(raw.y, val),
                  take(raw.x, test), take(raw.y, test), input_shape=tuple(raw.x.shape[1:]),
                  n_outputs=n_outputs, task=raw.task, name=name, class_names=raw.class_names,
                  notes=notes, meta=raw.meta)


def _missing_classes(raw: RawData, val: np.ndarray, test: np.ndarray) -> tuple[str, ...]:
    """A note for each held-out split without a sample of some class (a class of a
    few samples among many): its metrics leave that class out, and a model that
    never predicts it can score a perfect val_f1 there."""
    if raw.task != "classification" or raw.y.ndim != 1:
        return ()
    labels, counts = np.unique(raw.y, return_counts=True)
    notes = []
    for split, idx in (("val", val), ("test", test)):
        if not len(idx):
            continue
        absent = np.isin(labels, raw.y[idx], invert=True)
        if absent.any():
            names = raw.class_names
            named = ", ".join(f"{names[c] if 0 <= c < len(names) else c} ({n} in all)"
                              for c, n in zip(labels[absent][:3], counts[absent][:3]))
            more = f" and {absent.sum() - 3} more" if absent.sum() > 3 else ""
            notes.append(f"data.{split}_fraction: the {split} split holds no sample of class"
                         f"{'es' if absent.sum() > 1 else ''} {named}{more}: its metrics leave "
                         f"{'them' if absent.sum() > 1 else 'it'} out (a model that never "
                         f"predicts {'them' if absent.sum() > 1 else 'it'} can score a "
                         f"{split}_f1 of 1.0 there); raise data.{split}_fraction, or gather "
                         f"more samples "
                         f"of {'them' if absent.sum() > 1 else 'it'}")
    return tuple(notes)


def _loader(name: str) -> Loader:
    try:
        return _LOADERS[name]
    except KeyError:
        raise unknown("dataset", name, _LOADERS, key="data.name") from None


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"data.val_fraction: must be in (0, 1), got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0:
        raise UserError(f"data.test_fraction: must be in [0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(f"data.val_fraction: val_fraction + test_fraction must be < 1, "
                        f"got {val_fraction} + {test_fraction}")


def _check_split_seed(seed: int) -> None:
    # scikit-learn's own error for a bad seed was taken for a failed stratification.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= seed < 2**32):
        raise UserError(f"data.split_seed: must be an integer from 0 to 2**32 - 1, got {seed!r}")


def _checked_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    valid = dataset_options(name)
    out = {}
    for key, value in options.items():
        if key not in valid:
            if not valid:
                raise UserError(f"data.options.{key}: dataset '{name}' takes no options")
            raise unknown("option", key, valid, key=f"data.options.{key}")
        if valid[key].type is str and isinstance(value, list) and all(
                isinstance(v, str) for v in value):
            value = ", ".join(value)        # `features: [a, b]` as `features: "a, b"`
        if value is None and valid[key].default is not None:   # `features:` and nothing after
            listed = " (or a list of names)" if key in ("features", "exclude") else ""
            raise UserError(f"data.options.{key}: empty (null); give a value{listed}, or leave "
                            f"the key out for its default ({valid[key].default!r})")
        out[key] = check_value(valid[key], value, key=f"data.options.{key}")
    return out


def _split(raw: RawData, val_fraction: float, test_fraction: float, seed: int,
           size: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index arrays (sorted) of a stratified train/val/test split for classification.
    `size`: the key that sets how many samples there are (`data.options.limit`,
    `data.options.n`, else the dataset itself) and its value, for the errors."""
    from sklearn.model_selection import train_test_split

    n = len(raw.y)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    stratify = raw.y if raw.task == "classification" else None
    if n and test_fraction > 0 and n_test < 1:   # else `final` says there is no test split
        least = 1 if stratify is None else len(np.unique(stratify))   # one of each class
        raise UserError(f"data.test_fraction: {test_fraction} of {n} samples leaves an empty "
                        f"test split; raise it to at least {_fraction_for(least, n)}, or set "
                        f"it to 0 for none")
    if n_val < 1 or n - n_val - n_test < 1:
        raise UserError(f"data.val_fraction: {val_fraction} (with test_fraction "
                        f"{test_fraction}) leaves an empty split of {n} samples")
    if stratify is not None:
        _check_stratifiable(raw, (val_fraction, test_fraction), size)
    rest, test = np.arange(n), np.arange(0)
    try:
        if n_test:
            rest, test = train_test_split(rest, test_size=n_test, random_state=seed,
                                          stratify=stratify)
        train, val = train_test_split(rest, test_size=n_val, random_state=seed,
                                      stratify=None if stratify is None else stratify[rest])
    except ValueError:   # a class of 2 split 1 + 1 by the test split: 1 left for val
        labels, counts = np.unique(raw.y, return_counts=True)
        rare = _class_name(raw, labels[counts.argmin()])
        raise UserError(f"{size[0]}: {n} samples are too few to stratify into train, val and "
                        f"test: class {rare} has only {counts.min()} (give each class at least "
                        f"3); {_more_data(size)}") from None
    return np.sort(train), np.sort(val), np.sort(test)


def _check_stratifiable(raw: RawData, fractions: tuple[float, float],
                        size: tuple[str, int]) -> None:
    """The splits sklearn cannot stratify, explained in the study's own keys: a class
    with a single sample, or a split too small to hold one sample of every class."""
    labels, counts = np.unique(raw.y, return_counts=True)
    n, k = len(raw.y), len(labels)
    if counts.min() < 2:
        lone = [_class_name(raw, c) for c in labels[counts < 2]]
        shown = ", ".join(lone[:5]) + (f" and {len(lone) - 5} more" if len(lone) > 5 else "")
        which = f"classes {shown}" if len(lone) > 1 else f"class {shown}"
        raise UserError(f"{size[0]}: {n} samples leave {which} with a single sample; a "
                        f"stratified split needs at least 2 of each class; {_more_data(size)}")
    sizes = _split_sizes(n, *fractions)
    small = next((split for split in ("test", "val", "train") if 0 < sizes[split] < k), None)
    if small is None:
        return
    fixes = [f"raise data.{small}_fraction" if small != "train"
             else "lower data.val_fraction or data.test_fraction"]
    key = "data.val_fraction" if small == "train" else f"data.{small}_fraction"
    enough = _samples_for(k, fractions)
    if size[0] in ("data.options.limit", "data.options.n"):
        key = size[0]
        fixes.insert(0, f"raise {size[0]} to at least {enough}")
    elif size[0] in ("data.options.root", "data.options.path"):
        fixes.append(f"use data of at least {enough} samples")
    raise UserError(f"{key}: a {small} split of {sizes[small]} (of {n} samples) is fewer than "
                    f"the {k} classes; {' or '.join(fixes)}")


def _samples_for(k: int, fractions: tuple[float, float]) -> int:
    """The fewest samples whose val, test (if any) and train splits hold k each."""
    val_fraction, test_fraction = fractions
    smallest = min(f for f in (val_fraction, test_fraction, 1 - val_fraction - test_fraction)
                   if f > 0)
    n = math.ceil(k / smallest)
    while any(m < k for split, m in _split_sizes(n, *fractions).items()
              if split != "test" or test_fraction > 0):
        n += 1
    return n


def _fraction_for(m: int, n: int) -> str:
    """The shortest decimal fraction of `n` samples that rounds to at least `m`."""
    digits = 3
    while round(n * float(f"{m / n:.{digits}g}")) < m:
        digits += 1
    return f"{m / n:.{digits}g}"


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return {"val": n_val, "test": n_test, "train": n - n_val - n_test}


def _class_name(raw: RawData, label: int) -> str:
    names = raw.class_names
    if 0 <= label < len(names) and names[label] != str(label):
        return f"{label} ({names[label]})"
    return str(label)


def _more_data(size: tuple[str, int]) -> str:
    key, value = size
    if key in ("data.options.root", "data.options.path"):
        return "the data need more samples of each class"
    if key == "data.name":
        return "this dataset is too small to split"
    return f"raise {key} (now {value})"


def _size_of(name: str, options: dict[str, Any]) -> tuple[str, int]:
    """The option that sets how many samples there are and its value: `limit` or `n`
    when set, else `root` or `path` for data read from files, else the dataset's name."""
    valid = dataset_options(name)
    for key in ("limit", "n"):
        if options.get(key):
            return f"data.options.{key}", options[key]
    for key in ("root", "path"):
        if key in valid and options.get(key):
            return f"data.options.{key}", 0
    return ("data.options.root", 0) if "root" in valid else ("data.name", 0)


def printable_name(name: str) -> str:
    """A file name as UTF-8 text: bytes the file system holds that are not UTF-8
    (`bad\\xff.png`, which Python holds as lone surrogates that no UTF-8 file
    takes) written as escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------- datasets

@dataset("digits")
def digits() -> RawData:
    """scikit-learn's 1,797 8x8 handwritten digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]   # (n, 1, 8, 8)
    return _frozen(RawData(x, bunch.target.astype(np.int64),
                           class_names=tuple(str(c) for c in bunch.target_names)))


UNSPLIT_NOTE = ("data.name: xor's four points are its training, validation and test splits "
                "alike (val_fraction, test_fraction and split_seed take no effect): val_ and "
                "test_ metrics say how well a model fits them, not how it does on points it "
                "never saw; options n or noise make a cloud of points with held-out splits")


@dataset("xor")
def xor(noise: float = 0.0, n: int = 0) -> RawData:
    """The four points of the XOR problem. With `noise` or `n`: a cloud of `n` points
    (200 by default) around the four corners with Gaussian noise of std `noise`,
    generated from a fixed seed so the dataset does not vary between trials."""
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    check_at_least(0, "data.options", noise=noise, n=n)
    _check_finite(noise=noise)
    _check_memory(n or 200, 2)
    if noise == 0 and n == 0:
        return _frozen(RawData(corners, labels, class_names=("0", "1"), unsplit=True,
                               notes=(UNSPLIT_NOTE,)))
    rng = np.random.default_rng(0)
    which = np.arange(n or 200) % 4
    x = corners[which] + rng.normal(0.0, noise, size=(len(which), 2)).astype(np.float32)
    return _frozen(RawData(x, labels[which], class_names=("0", "1")))


def _check_finite(**values: float) -> None:
    """An infinite noise passed `>= 0` and made every trial fail with a NaN loss."""
    for key, value in values.items():
        if not math.isfinite(value):
            raise UserError(f"data.options.{key}: must be a finite number, got {value}")


# Input values a generated dataset may hold (400 MB as float32; generating them takes
# a few times that): more is a typo, and `n: 100000000000` failed with a MemoryError.
MAX_VALUES = 100_000_000


def _check_memory(n: int, per_sample: int, **sizes: int) -> None:
    """Refuse, before generating anything, `n` samples of `per_sample` input values
    that hold more than MAX_VALUES. `sizes`: the options that set a sample's size,
    the one blamed when even the fewest samples (10) would be too many."""
    if n * per_sample <= MAX_VALUES:
        return
    why = f"at most {MAX_VALUES} input values are generated, to fit in memory"
    if sizes and 10 * per_sample > MAX_VALUES:
        key, value = max(sizes.items(), key=lambda kv: kv[1])
        raise UserError(f"data.options.{key}: {value} makes samples of {per_sample} values, "
                        f"too many for 10 samples ({why})")
    raise UserError(f"data.options.n: must be <= {MAX_VALUES // per_sample} here, got {n} "
                    f"(a sample holds {per_sample} values; {why})")


def _frozen(raw: RawData) -> RawData:
    # Cached arrays are shared by every trial in the process: make writes fail loudly.
    raw.x.setflags(write=False)
    raw.y.setflags(write=False)
    return raw


@dataset("moons")
def moons(n: int = 1000, noise: float = 0.2) -> RawData:
    """scikit-learn's two interleaving half circles: 2-D points, two classes,
    generated from a fixed seed so every trial sees the same points."""
    from sklearn.datasets import make_moons

    check_at_least(10, "data.options", n=n)
    check_at_least(0, "data.options", noise=noise)
    _check_finite(noise=noise)
    _check_memory(n, 2)
    x, y = make_moons(n_samples=n, noise=noise, random_state=0)
    return _frozen(RawData(x.astype(np.float32), y.astype(np.int64), class_names=("0", "1")))


@dataset("diabetes")
def diabetes() -> RawData:
    """scikit-learn's diabetes regression data: 442 patients, 10 standardised
    features; the target (disease progression after a year) is standardised to
    mean 0 and std 1, so an MSE of 1.0 is the predict-the-mean baseline."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    x = bunch.data / bunch.data.std(axis=0)
    y = (bunch.target - bunch.target.mean()) / bunch.target.std()
    # data.json: what scales a prediction back to the target's units (progression)
    meta = {"target": {"name": "progression", "mean": [float(bunch.target.mean())],
                       "std": [float(bunch.target.std())]}}
    return _frozen(RawData(x.astype(np.float32), y.astype(np.float32)[:, None], task="regression",
                           meta=meta))


@dataset("seq_digits")
def seq_digits() -> RawData:
    """The 8x8 digits read row by row: 8 time steps of 8 pixels each."""
    d = digits()
    return _frozen(RawData(np.ascontiguousarray(d.x[:, 0]), d.y.copy(), class_names=d.class_names))


@dataset("adding")
def adding(length: int = 50, n: int = 2000) -> RawData:
    """Hochreiter and Schmidhuber's adding problem: `length` steps of (value, marker);
    the target is the sum of the two marked values, one marked in each half.
    Predicting the mean (1.0) gives an MSE of about 0.167."""
    check_at_least(2, "data.options", length=length)
    check_at_least(10, "data.options", n=n)
    _check_memory(n, length * 2, length=length)
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    half = length // 2
    first, second = rng.integers(0, half, n), rng.integers(half, length, n)
    markers = np.zeros((n, length))
    markers[np.arange(n), first] = markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)
    return _frozen(RawData(x, y[:, None], task="regression"))


COPY_VOCAB = ("_", "1", "2", "3", "4", "5", "6", "7", "8", ":")   # blank, 8 symbols, delimiter


@dataset("copy")
def copy(delay: int = 10, symbols: int = 10, n: int = 2000) -> RawData:
    """The copy-memory problem: `symbols` random symbols, `delay` blanks, a delimiter,
    then the net must output the symbols again. Inputs are one-hot (steps, 10);
    targets are a token per step, blank until the symbols are due."""
    check_at_least(1, "data.options", delay=delay)
    check_at_least(1, "data.options", symbols=symbols)
    check_at_least(10, "data.options", n=n)
    steps = symbols + delay + symbols
    _check_memory(n, steps * len(COPY_VOCAB), delay=delay, symbols=symbols)
    rng = np.random.default_rng(0)
    seq = rng.integers(1, 9, size=(n, symbols))
    tokens = np.zeros((n, steps), dtype=np.int64)
    tokens[:, :symbols] = seq
    tokens[:, symbols + delay - 1] = len(COPY_VOCAB) - 1            # the delimiter: "now copy"
    y = np.zeros((n, steps), dtype=np.int64)
    y[:, -symbols:] = seq
    return _frozen(RawData(_one_hot(tokens, len(COPY_VOCAB)), y, task="sequence_transduction",
                           class_names=COPY_VOCAB))


@dataset("reverse")
def reverse(length: int = 8, vocab: int = 10, n: int = 4000) -> RawData:
    """Sequences of `length` random digits from a vocabulary of `vocab`; the target
    is the sequence reversed (an encoder-decoder's classic first test). Inputs are
    one-hot (length, vocab); targets are tokens."""
    check_at_least(1, "data.options", length=length)
    check_at_least(10, "data.options", n=n)
    if not 2 <= vocab <= 62:
        raise UserError(f"data.options.vocab: must be in [2, 62], got {vocab}")
    _check_memory(n, length * vocab, length=length)
    tokens = np.random.default_rng(0).integers(0, vocab, size=(n, length))
    names = tuple("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[:vocab])
    return _frozen(RawData(_one_hot(tokens, vocab), np.ascontiguousarray(tokens[:, ::-1]),
                           task="sequence_transduction", class_names=names))


@dataset("text")
def text(path: str = "", window: int = 64, max_chars: int = 200_000) -> RawData:
    """Character-level language modelling: windows of `window` characters, each
    target the input shifted by one. `path` is any UTF-8 text file; empty means the
    default corpus, the docstrings of the Python standard library (on every machine
    with Python, gathered in a fixed order). Only the first `max_chars` are used."""
    from hypersweep.models.corpus import read_text, stdlib_docstrings

    check_at_least(2, "data.options", window=window)
    check_at_least(100, "data.options", max_chars=max_chars)
    chars = read_text(path, max_chars) if path else stdlib_docstrings(max_chars)
    vocab = tuple(sorted(set(chars)))
    index = {c: i for i, c in enumerate(vocab)}
    seq = np.fromiter((index[c] for c in chars), dtype=np.int64, count=len(chars))
    n = (len(seq) - 1) // window
    if n < 10:
        raise UserError(f"data.options.window: {len(chars)} characters make only {n} windows "
                        f"of {window}; use a longer text or a shorter window")
    x = seq[:n * window].reshape(n, window)
    y = seq[1:n * window + 1].reshape(n, window)
    return _frozen(RawData(x, y, task="language_modelling", class_names=vocab))


def _one_hot(tokens: np.ndarray, vocab: int) -> np.ndarray:
    return np.eye(vocab, dtype=np.float32)[tokens]


# Registered here so that every dataset is known once models.data is imported.
from hypersweep.models import image_files  # noqa: E402,F401  (mnist, fashion_mnist, cifar10)
from hypersweep.models import image_folder  # noqa: E402,F401  (images)
from hypersweep.models import tables  # noqa: E402,F401  (csv, npz)
