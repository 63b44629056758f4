"""Loaders of image datasets in their official file formats, from a data directory.

- `mnist`, `fashion_mnist`: the four IDX files (`train-images-idx3-ubyte`, ...), raw
  or gzipped;
- `cifar10`: the python pickle batches (`data_batch_1`..`data_batch_5`,
  `test_batch`, optionally `batches.meta`), in the directory or its
  `cifar-10-batches-py/` folder as the official archive unpacks.

The directory is `data.options.root`, else `$HYPERSWEEP_DATA/<name>`, else
`~/.cache/hypersweep/<name>`. Missing files are downloaded from the official
mirrors when `download` is true and the network answers; otherwise the error names
the directory and the files expected. The official train and test files are pooled:
the study's own split (`val_fraction`, `test_fraction`) decides what is held out.
`limit` > 0 keeps the first `limit` images, for quick CPU studies. Pixels are
scaled to [0, 1]; images are (1, 28, 28) and (3, 32, 32).
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from hypersweep.models.data import RawData, _frozen, dataset
from hypersweep.models.errors import UserError, first_line

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
IDX_TYPES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck")
TIMEOUT_S = 20


def data_dir(name: str, root: str) -> Path:
    if root:
        return Path(root).expanduser()
    env = os.environ.get("HYPERSWEEP_DATA")
    return Path(env) / name if env else Path.home() / ".cache" / "hypersweep" / name


def _folder(name: str, root: str) -> Path:
    """The data directory; one that is a file is named (not "files not found in" it)."""
    folder = data_dir(name, root)
    if folder.is_file():
        key = "data.options.root" if root else "data.name"
        raise UserError(f"{key}: {folder} is a file, not a directory; the {name} data "
                        "directory holds its files")
    return folder


@dataset("mnist")
def mnist(root: str = "", download: bool = True, limit: int = 0) -> RawData:
    """MNIST handwritten digits (70,000 28x28 images) from IDX files."""
    return _idx_dataset("mnist", root, download, limit, tuple(str(i) for i in range(10)))


@dataset("fashion_mnist")
def fashion_mnist(root: str = "", download: bool = True, limit: int = 0) -> RawData:
    """Fashion-MNIST (70,000 28x28 images of 10 kinds of clothing) from IDX files."""
    return _idx_dataset("fashion_mnist", root, download, limit, FASHION_CLASSES)


@dataset("cifar10")
def cifar10(root: str = "", download: bool = True, limit: int = 0) -> RawData:
    """CIFAR-10 (60,000 32x32 colour images, 10 classes) from the python batches."""
    _check_limit(limit)
    folder = _folder("cifar10", root)
    found = _cifar_folder(folder)
    if found is None and download:
        _download_cifar(folder)
        found = _cifar_folder(folder)
    if found is None:
        raise _missing("cifar10", folder, CIFAR_FILES + ("(or cifar-10-batches-py/ holding them)",))
    classes = _cifar_classes(found / "batches.meta")
    xs, ys = [], []
    for name in CIFAR_FILES:
        x, y = _cifar_batch(found / name)
        _check_labels("cifar10", found / name, y, classes)
        xs.append(x)
        ys.append(y)
    if not sum(len(x) for x in xs):
        raise UserError(f"data.options.root: the CIFAR-10 batches in {found} hold no images")
    return _raw(np.concatenate(xs), np.concatenate(ys), classes, limit)


def _idx_dataset(name: str, root: str, download: bool, limit: int,
                 classes: tuple[str, ...]) -> RawData:
    _check_limit(limit)
    folder = _folder(name, root)
    paths = {f: _idx_path(folder, f) for f in IDX_FILES}
    if download and any(p is None for p in paths.values()):
        _download_idx(name, folder, [f for f, p in paths.items() if p is None])
        paths = {f: _idx_path(folder, f) for f in IDX_FILES}
    missing = [f"{f}[.gz]" for f, p in paths.items() if p is None]
    if missing:
        raise _missing(name, folder, missing)
    train = _idx_pair(name, paths[IDX_FILES[0]], paths[IDX_FILES[1]], classes)
    test = _idx_pair(name, paths[IDX_FILES[2]], paths[IDX_FILES[3]], classes)
    if train[0].shape[1:] != test[0].shape[1:]:
        raise UserError(f"data.options.root: the images in {paths[IDX_FILES[0]]} are "
                        f"{train[0].shape[1:]}, those in {paths[IDX_FILES[2]]} "
                        f"{test[0].shape[1:]}; they must match")
    x, y = np.concatenate([train[0], test[0]]), np.concatenate([train[1], test[1]])
    if not len(x):
        raise UserError(f"data.options.root: {paths[IDX_FILES[0]]} and "
                        f"{paths[IDX_FILES[2]]} hold no images")
    return _raw(x[:, None], y, classes, limit)


def _idx_pair(name: str, images: Path, labels: Path,
              classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise UserError(f"data.options.root: {images} holds {x.shape} images and {labels} "
                        f"{y.shape} labels; expected (n, rows, cols) and (n,)")
    if x.dtype != np.uint8:   # pixels are scaled by 1/255: other types left [0, 1] or crushed
        raise UserError(f"data.options.root: {images} holds {x.dtype.name} pixels (IDX type "
                        f"0x{IDX_TYPES[x.dtype.str[1:]]:02X}); images must be unsigned bytes, "
                        "type 0x08, pixels 0-255")
    _check_labels(name, labels, y, classes)
    return x, y


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's format: zero bytes, dtype code, rank, big-endian sizes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:   # EOFError: a gzip file cut short
        raise UserError(f"data.options.root: cannot read {path}: {first_line(e)}") from None
    dtypes = {code: ">" + kind for kind, code in IDX_TYPES.items()}
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in dtypes:
        raise UserError(f"data.options.root: {path} is not an IDX file")
    rank = data[3]
    header = 4 + 4 * rank              # the magic number, then one 4-byte size a dimension
    if len(data) < header:
        raise UserError(f"data.options.root: {path} has {len(data)} bytes, its header "
                        f"promises at least {header}")
    dims = [int(d) for d in np.frombuffer(data, dtype=">u4", count=rank, offset=4)]
    dtype = np.dtype(dtypes[data[2]])
    expected = header + math.prod(dims) * dtype.itemsize
    if len(data) != expected:
        raise UserError(f"data.options.root: {path} has {len(data)} bytes, its header "
                        f"promises {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _idx_path(folder: Path, stem: str) -> Path | None:
    candidates = (folder / stem, folder / f"{stem}.gz")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    for candidate in candidates:
        _not_a_directory(candidate, "an IDX file")
    return None


def _not_a_directory(path: Path, what: str) -> None:
    if path.is_dir():
        raise UserError(f"data.options.root: {path} is a directory; expected {what}")


def _cifar_folder(folder: Path) -> Path | None:
    candidates = (folder, folder / "cifar-10-batches-py")
    for candidate in candidates:
        if all((candidate / f).is_file() for f in CIFAR_FILES):
            return candidate
    for candidate in candidates:
        for f in CIFAR_FILES:
            _not_a_directory(candidate / f, "a CIFAR-10 python batch")
    return None


# What unpickling a CIFAR-10 batch may call: numpy's array, scalar and dtype
# rebuilders (numpy 1's module names, as the official files have them, and numpy
# 2's) and the bytes decoder of a protocol-2 pickle from Python 3. Nothing else.
_ARRAY_PICKLE = frozenset({
    *((module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    *((module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _RefusedGlobal(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays only: a pickle can
    call any function as it loads (`os.system`), and a data file is no program."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_PICKLE:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path, what: str) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except OSError as e:
        raise UserError(f"data.options.root: cannot read {path}: {e.strerror or e}") from None
    except _RefusedGlobal as e:
        raise UserError(f"data.options.root: {path} is not {what}: unpickling it would call "
                        f"{e.name}, where a batch holds only arrays, lists and strings "
                        "(refused: a pickle can run code as it loads)") from None
    except Exception as e:   # a pickle of anything can fail in any way: say which file
        raise UserError(f"data.options.root: {path} is not {what} "
                        f"(unpickling it failed: {first_line(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"data.options.root: {path} is not {what} "
                        f"(it holds a {type(obj).__name__}, not a dict)")
    return obj


def _entry(batch: dict, key: str, path: Path, what: str):
    """`batch[b'key']` (the official bytes keys), or `batch['key']`."""
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise UserError(f"data.options.root: {path} is not {what} (it has no '{key}' entry)")


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (n, 3, 32, 32) uint8 and labels (n,) int64."""
    what = "a CIFAR-10 python batch"
    batch = _unpickle(path, what)
    data, labels = _entry(batch, "data", path, what), _entry(batch, "labels", path, what)
    try:
        x = np.asarray(data)
        y = np.asarray(labels)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"data.options.root: {path} is not {what} "
                        f"({first_line(e)})") from None
    # Checked before the cast to bytes, which wrapped 300 to 44 and truncated 0.7 to 0.
    if x.size and x.dtype.kind not in "iu":
        raise UserError(f"data.options.root: {path} is not {what}: its data are {x.dtype} "
                        "values, not integers 0-255")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise UserError(f"data.options.root: {path} is not {what}: its data run from "
                        f"{x.min()} to {x.max()}, not integers 0-255")
    x = x.astype(np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise UserError(f"data.options.root: {path} is not {what}: its data has shape "
                        f"{x.shape}; expected (n, 3072), rows of 3x32x32 bytes")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"data.options.root: {path} is not {what}: it holds {len(x)} "
                        f"images and {y.shape} labels; expected ({len(x)},)")
    return x.reshape(-1, 3, 32, 32), y


def _cifar_classes(meta: Path) -> tuple[str, ...]:
    if not meta.is_file():
        return CIFAR_CLASSES
    what = "a CIFAR-10 batches.meta file"
    names = _entry(_unpickle(meta, what), "label_names", meta, what)
    try:
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except (TypeError, UnicodeDecodeError) as e:
        raise UserError(f"data.options.root: {meta} is not {what} "
                        f"(label_names: {first_line(e)})") from None
    if not classes:
        raise UserError(f"data.options.root: {meta} is not {what} (label_names is empty)")
    return classes


def _check_labels(name: str, path: Path, y: np.ndarray, classes: tuple[str, ...]) -> None:
    """Labels must index the classes: a label of 10 with 10 classes would fail every
    trial later, far from the file at fault."""
    if y.size and y.dtype.kind not in "iu":
        raise UserError(f"data.options.root: labels in {path} are {y.dtype} values, "
                        f"not class numbers 0-{len(classes) - 1}")
    if y.size and (y.min() < 0 or y.max() >= len(classes)):
        span = f"from {y.min()} to {y.max()}" if y.min() < 0 else f"to {y.max()}"
        raise UserError(f"data.options.root: labels in {path} run {span}; {name} has "
                        f"classes 0-{len(classes) - 1}")


def _raw(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], limit: int) -> RawData:
    if limit:
        x, y = x[:limit], y[:limit]
    return _frozen(RawData((x / 255.0).astype(np.float32), y.astype(np.int64),
                           class_names=classes))


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise UserError(f"data.options.limit: must be >= 0, got {limit}")


def _missing(name: str, folder: Path, files) -> UserError:
    return UserError(f"data.name: {name} files not found in {folder} (set data.options.root "
                     f"or $HYPERSWEEP_DATA; download failed or is off); expected: "
                     f"{', '.join(files)}")


def _fetch(url: str, dest: Path) -> bool:
    """Download `url` to `dest` atomically; False (not an error) when offline."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as r:
            # Only once the server answers: offline, no empty data directory is left.
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        tmp.replace(dest)
        return True
    except OSError:    # URLError, timeouts and disk errors are all OSErrors
        tmp.unlink(missing_ok=True)
        return False


def _download_idx(name: str, folder: Path, stems: list[str]) -> None:
    for stem in stems:
        for mirror in MIRRORS[name]:
            if _fetch(mirror + stem + ".gz", folder / f"{stem}.gz"):
                break
        else:
            return   # offline: no point trying the other files


def _download_cifar(folder: Path) -> None:
    archive = folder / "cifar-10-python.tar.gz"
    if not _fetch(CIFAR_URL, archive):
        return
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    archive.unlink(missing_ok=True)
