"""The mnist, fashion_mnist and cifar10 loaders on small files written in the
official formats (IDX, raw and gzipped; CIFAR-10 python pickle batches)."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from hypersweep.models.data import load_dataset
from hypersweep.models.errors import UserError
from hypersweep.models.image_files import IDX_FILES, read_idx


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


def images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), np.arange(n) % 10


def write_mnist(folder: Path, gz: bool, n_train: int = 50, n_test: int = 20):
    folder.mkdir(parents=True, exist_ok=True)
    (xtr, ytr), (xte, yte) = images(n_train, (28, 28), 0), images(n_test, (28, 28), 1)
    for name, arr in zip(IDX_FILES, (xtr, ytr, xte, yte)):
        write_idx(folder / name, arr, gz)
    return np.concatenate([xtr, xte]), np.concatenate([ytr, yte])


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_loader_reads_the_official_files(tmp_path, name, gz):
    x, y = write_mnist(tmp_path / name, gz)
    s = load_dataset(name, root=str(tmp_path / name), download=False,
                     val_fraction=0.2, test_fraction=0.2)
    assert s.input_shape == (1, 28, 28) and s.n_outputs == 10 and s.task == "classification"
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 70
    # Every pooled image comes back once, scaled to [0, 1], with its own label.
    got_x = torch.cat([s.x_train, s.x_val, s.x_test]).numpy()
    got_y = torch.cat([s.y_train, s.y_val, s.y_test]).numpy()
    want = {(xi.tobytes(), int(yi)) for xi, yi in zip((x / 255.0).astype(np.float32), y)}
    assert {(xi[0].tobytes(), int(yi)) for xi, yi in zip(got_x, got_y)} == want
    if name == "fashion_mnist":
        assert s.class_names[0] == "T-shirt/top" and s.class_names[9] == "Ankle boot"


def test_idx_limit_and_data_dir_from_environment(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", gz=True)
    monkeypatch.setenv("HYPERSWEEP_DATA", str(tmp_path))
    s = load_dataset("mnist", download=False, limit=40, val_fraction=0.25, test_fraction=0.25)
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 40


def test_read_idx_checks_header_and_size(tmp_path):
    good = tmp_path / "ok"
    write_idx(good, np.arange(12).reshape(3, 4), gz=False)
    assert read_idx(good).tolist() == np.arange(12).reshape(3, 4).tolist()
    (tmp_path / "short").write_bytes(good.read_bytes()[:-1])
    with pytest.raises(UserError, match="header promises"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


def test_missing_files_offline_name_the_directory_and_files(tmp_path):
    folder = tmp_path / "empty"
    for name, expected in [("mnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1")]:
        with pytest.raises(UserError) as e:
            load_dataset(name, root=str(folder), download=False)
        msg = str(e.value)
        assert "\n" not in msg and str(folder) in msg and expected in msg
        assert msg.startswith("data.name: ")


def test_unknown_option_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data.options.rot.*did you mean 'root'"):
        load_dataset("mnist", rot=str(tmp_path))


def write_cifar(folder: Path, per_batch: int = 10, meta: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        x, y = images(per_batch, (3072,), seed=i)
        xs.append(x)
        ys.append(y)
        with open(folder / name, "wb") as f:   # the official layout: bytes keys
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y.tolist(),
                         b"filenames": [b"x.png"] * per_batch}, f)
    if meta:
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    return np.concatenate(xs).reshape(-1, 3, 32, 32), np.concatenate(ys)


@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_loader_reads_pickle_batches(tmp_path, nested):
    folder = tmp_path / "cifar"
    x, y = write_cifar(folder / "cifar-10-batches-py" if nested else folder, meta=nested)
    s = load_dataset("cifar10", root=str(folder), download=False)
    assert s.input_shape == (3, 32, 32) and s.n_outputs == 10
    assert s.class_names[0] == ("c0" if nested else "airplane")
    got = torch.cat([s.x_train, s.x_val, s.x_test])
    got_y = torch.cat([s.y_train, s.y_val, s.y_test])
    assert len(got) == 60
    # Channel-first: the first 1024 bytes of a row are the red plane.
    want = {(xi.tobytes(), int(yi)) for xi, yi in zip((x / 255.0).astype(np.float32), y)}
    assert {(xi.numpy().tobytes(), int(yi)) for xi, yi in zip(got, got_y)} == want


@pytest.fixture
def mirror(tmp_path):
    """A local HTTP server over a folder: the download path without the internet."""
    import functools
    import http.server
    import threading

    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_missing_files_are_downloaded_from_a_mirror(tmp_path, mirror, monkeypatch):
    import tarfile

    from hypersweep.models import image_files

    served, url = mirror
    x, _ = write_mnist(served, gz=True)
    # The first mirror is down: the loader falls back to the next one.
    monkeypatch.setitem(image_files.MIRRORS, "mnist", (url + "gone/", url))
    s = load_dataset("mnist", root=str(tmp_path / "data"), val_fraction=0.2, test_fraction=0.2)
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == len(x)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        f"{f}.gz" for f in IDX_FILES)

    write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(image_files, "CIFAR_URL", url + "cifar-10-python.tar.gz")
    s = load_dataset("cifar10", root=str(tmp_path / "cifar"))
    assert len(s.y_train) + len(s.y_val) + len(s.y_test) == 60
    assert not (tmp_path / "cifar" / "cifar-10-python.tar.gz").exists()   # unpacked, removed


def test_a_failed_download_leaves_no_partial_file(tmp_path, mirror, monkeypatch):
    from hypersweep.models import image_files

    _, url = mirror
    monkeypatch.setitem(image_files.MIRRORS, "mnist", (url + "gone/",))
    with pytest.raises(UserError, match="mnist files not found"):
        load_dataset("mnist", root=str(tmp_path / "data"))
    assert not (tmp_path / "data").exists()         # not even an empty directory


# ------------------------------------------------- files that are not what they claim

CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batches(folder: Path, rows: int = 10, labels=None, data=None, drop: str = "",
                  content=None) -> Path:
    """Six CIFAR batches; `labels(i)`/`data(i)` override batch i's entries, `drop` leaves
    one out, `content` replaces data_batch_1 by that object (bytes: the raw file)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_NAMES):
        batch = {b"data": data(i) if data else np.zeros((rows, 3072), np.uint8),
                 b"labels": labels(i) if labels else [j % 10 for j in range(rows)]}
        batch.pop(drop.encode(), None)
        if content is not None and i == 0:
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
                continue
            batch = content
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return folder / CIFAR_NAMES[0]


def cifar_error(folder: Path) -> str:
    with pytest.raises(UserError) as e:
        load_dataset("cifar10", root=str(folder), download=False)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_file_that_is_not_a_cifar_batch_is_named(tmp_path):
    first = write_batches(tmp_path / "junk", content=b"not a pickle")
    assert cifar_error(tmp_path / "junk") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch (unpickling it failed: "
        "invalid load key, 'n'.)")
    first = write_batches(tmp_path / "list", content=[1, 2, 3])
    assert cifar_error(tmp_path / "list") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch (it holds a list, not a "
        "dict)")
    folder = tmp_path / "meta"
    write_batches(folder)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"num_cases_per_batch": 10}, f)
    assert cifar_error(folder) == (f"data.options.root: {folder / 'batches.meta'} is not a "
                                   "CIFAR-10 batches.meta file (it has no 'label_names' entry)")
    with open(folder / "batches.meta", "wb") as f:   # 5 names, labels 0-9
        pickle.dump({b"label_names": [b"a", b"b", b"c", b"d", b"e"]}, f)
    assert cifar_error(folder) == (f"data.options.root: labels in {folder / 'data_batch_1'} "
                                   "run to 9; cifar10 has classes 0-4")


def test_cifar_batches_with_wrong_rows_or_labels_are_named(tmp_path):
    first = write_batches(tmp_path / "rows", data=lambda i: np.zeros((30, 100), np.uint8),
                          rows=30)
    assert cifar_error(tmp_path / "rows") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch: its data has shape "
        "(30, 100); expected (n, 3072), rows of 3x32x32 bytes")
    first = write_batches(tmp_path / "nolabels", drop="labels")
    assert cifar_error(tmp_path / "nolabels") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch (it has no 'labels' entry)")
    first = write_batches(tmp_path / "count", labels=lambda i: list(range(9)))
    assert cifar_error(tmp_path / "count") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch: it holds 10 images and "
        "(9,) labels; expected (10,)")


def test_labels_outside_the_classes_are_named(tmp_path):
    write_batches(tmp_path / "c", labels=lambda i: [j % 11 for j in range(20)], rows=20)
    assert cifar_error(tmp_path / "c") == (
        f"data.options.root: labels in {tmp_path / 'c' / 'data_batch_1'} run to 10; cifar10 "
        "has classes 0-9")
    write_batches(tmp_path / "neg", labels=lambda i: [-1] + [1] * 9)
    assert cifar_error(tmp_path / "neg") == (
        f"data.options.root: labels in {tmp_path / 'neg' / 'data_batch_1'} run from -1 to 1; "
        "cifar10 has classes 0-9")

    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False)
    write_idx(folder / IDX_FILES[3], np.arange(20) % 11, gz=False)
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: labels in {folder / IDX_FILES[3]} run to 10; "
                            "mnist has classes 0-9")


def test_an_unreadable_gzip_file_is_named(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=True)
    (folder / f"{IDX_FILES[0]}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: cannot read {folder / IDX_FILES[0]}.gz: "
                            "Not a gzipped file (b'no')")


def test_too_few_samples_per_class_say_what_to_raise(tmp_path):
    write_mnist(tmp_path / "m", gz=False)
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root=str(tmp_path / "m"), download=False, limit=30)
    assert str(e.value) == (
        "data.options.limit: a test split of 6 (of 30 samples) is fewer than the 10 classes; "
        "raise data.options.limit to at least 50 or raise data.test_fraction")
    # Class 9 (truck) once in 60 images: no limit to raise, the files are too small.
    write_batches(tmp_path / "lone", labels=lambda i: [j % (9 if i < 5 else 10)
                                                       for j in range(10)])
    assert cifar_error(tmp_path / "lone") == (
        "data.options.root: 60 samples leave class 9 (truck) with a single sample; a stratified "
        "split needs at least 2 of each class; the data need more samples of each class")
    # Class 9 twice: the test split takes one, leaving one for train and val.
    write_batches(tmp_path / "two", labels=lambda i: [0 if j == 9 and i < 4 else j
                                                      for j in range(10)])
    assert cifar_error(tmp_path / "two") == (
        "data.options.root: 60 samples are too few to stratify into train, val and test: "
        "class 9 (truck) has only 2 (give each class at least 3); the data need more samples "
        "of each class")


@pytest.mark.parametrize("keep", [10, 6])    # in the sizes; in the first size
@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_file_cut_off_in_its_header_is_named(tmp_path, keep, gz):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=gz)
    path = folder / (IDX_FILES[0] + (".gz" if gz else ""))
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    path.write_bytes(gzip.compress(data[:keep]) if gz else data[:keep])
    with pytest.raises(UserError) as e:      # was numpy's "buffer is smaller than requested"
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: {path} has {keep} bytes, its header promises "
                            "at least 16")


@pytest.mark.parametrize("code,dtype,pixels,name", [
    (0x0B, ">i2", 1000, "int16"),       # loaded as pixels up to 3.92
    (0x0D, ">f4", 0.5, "float32"),      # loaded as 0.5 / 255
    (0x09, ">i1", -1, "int8"),
])
def test_idx_images_that_are_not_unsigned_bytes_are_named(tmp_path, code, dtype, pixels, name):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False)
    x = np.full((50, 28, 28), pixels, dtype=dtype)
    path = folder / IDX_FILES[0]
    path.write_bytes(bytes([0, 0, code, 3]) + struct.pack(">3I", *x.shape) + x.tobytes())
    assert read_idx(path).dtype == np.dtype(dtype)      # a valid IDX file...
    with pytest.raises(UserError) as e:                 # ...but not of images of bytes
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: {path} holds {name} pixels (IDX type "
                            f"0x{code:02X}); images must be unsigned bytes, type 0x08, "
                            "pixels 0-255")


@pytest.mark.parametrize("data,said", [
    (np.full((10, 3072), 300, np.int64), "run from 300 to 300"),   # loaded as 44
    (np.full((10, 3072), -1, np.int16), "run from -1 to -1"),      # loaded as 255
    (np.full((10, 3072), 0.7), "are float64 values"),              # loaded as 0
    ([["a"] * 3072] * 10, "are <U1 values"),
])
def test_cifar_data_that_are_not_bytes_are_named(tmp_path, data, said):
    zeros = np.zeros((10, 3072), np.uint8)
    first = write_batches(tmp_path / "c", data=lambda i: data if i == 0 else zeros)
    assert cifar_error(tmp_path / "c") == (
        f"data.options.root: {first} is not a CIFAR-10 python batch: its data {said}, not "
        "integers 0-255")


def test_cifar_data_of_integers_0_to_255_in_any_integer_type_load(tmp_path):
    data = np.arange(10 * 3072).reshape(10, 3072) % 256       # int64 values 0-255
    zeros = np.zeros((10, 3072), np.uint8)
    write_batches(tmp_path / "c", data=lambda i: data if i == 0 else zeros)
    s = load_dataset("cifar10", root=str(tmp_path / "c"), download=False)
    pooled = torch.cat([s.x_train, s.x_val, s.x_test])
    assert float(pooled.max()) == 1.0 and float(pooled.min()) == 0.0


def test_files_that_hold_no_images_are_named(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False, n_train=0, n_test=0)
    with pytest.raises(UserError) as e:    # was "data.val_fraction: ... split of 0 samples"
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: {folder / IDX_FILES[0]} and "
                            f"{folder / IDX_FILES[2]} hold no images")
    write_batches(tmp_path / "c", rows=0)
    assert cifar_error(tmp_path / "c") == (
        f"data.options.root: the CIFAR-10 batches in {tmp_path / 'c'} hold no images")


def test_a_directory_in_place_of_a_file_is_named(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist(folder, gz=False)
    (folder / IDX_FILES[2]).unlink()
    (folder / IDX_FILES[2]).mkdir()         # was "files not found"
    with pytest.raises(UserError) as e:
        load_dataset("mnist", root=str(folder), download=False)
    assert str(e.value) == (f"data.options.root: {folder / IDX_FILES[2]} is a directory; "
                            "expected an IDX file")
    write_batches(tmp_path / "c")
    (tmp_path / "c" / "test_batch").unlink()
    (tmp_path / "c" / "test_batch").mkdir()
    assert cifar_error(tmp_path / "c") == (f"data.options.root: {tmp_path / 'c' / 'test_batch'} "
                                           "is a directory; expected a CIFAR-10 python batch")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_a_root_that_is_a_file_is_named(tmp_path, name):
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(UserError) as e:     # was "files not found in <the file>"
        load_dataset(name, root=str(tmp_path / "f"), download=False)
    assert str(e.value) == (f"data.options.root: {tmp_path / 'f'} is a file, not a directory; "
                            f"the {name} data directory holds its files")


def test_a_cifar_batch_that_would_run_code_is_refused_unrun(tmp_path):
    """A pickle can call anything as it loads: a batch that names `os.system` is
    refused before the call (no file made), data batch or batches.meta alike."""
    made = tmp_path / "made"
    evil = f"cos\nsystem\n(S'touch {made}'\ntR.".encode()
    first = write_batches(tmp_path / "batch")
    (tmp_path / "batch" / "data_batch_4").write_bytes(evil)
    assert cifar_error(tmp_path / "batch") == (
        f"data.options.root: {tmp_path / 'batch' / 'data_batch_4'} is not a CIFAR-10 python "
        "batch: unpickling it would call os.system, where a batch holds only arrays, lists and "
        "strings (refused: a pickle can run code as it loads)")
    write_batches(tmp_path / "meta")
    (tmp_path / "meta" / "batches.meta").write_bytes(evil)
    assert "would call os.system" in cifar_error(tmp_path / "meta")
    assert not made.exists() and first.is_file()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batches_pickled_as_numpy_1_python_2_or_now_load(tmp_path, protocol):
    """The official files name numpy 1's modules (`numpy.core.multiarray`); a batch
    pickled by Python 3 at protocol 2 rebuilds its bytes with `_codecs.encode`, and
    at protocol 5 its arrays from buffers."""
    x, y = write_cifar(tmp_path)
    numpy_1 = 0
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        with open(tmp_path / name, "rb") as f:
            content = pickle.load(f)
        raw = pickle.dumps(content, protocol=protocol)
        if protocol == 2:
            assert b"_codecs" in raw
            raw = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            numpy_1 += b"cnumpy.core.multiarray\n" in raw
        (tmp_path / name).write_bytes(raw)
    assert numpy_1 == (6 if protocol == 2 else 0)
    s = load_dataset("cifar10", root=str(tmp_path), download=False)
    assert s.n_outputs == 10 and len(s.x_train) + len(s.x_val) + len(s.x_test) == len(y)
