"""The generated and shipped datasets beyond digits/xor: shapes, tasks, contents."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hypersweep.models.corpus import stdlib_docstrings
from hypersweep.models.data import (adding, copy, dataset_options, load_dataset, reverse,
                                    seq_digits, text)
from hypersweep.models.errors import UserError

SHAPES = {   # name: (input_shape, n_outputs, task, x dtype, one target's shape)
    "moons": ((2,), 2, "classification", torch.float32, ()),
    "diabetes": ((10,), 1, "regression", torch.float32, (1,)),
    "seq_digits": ((8, 8), 10, "classification", torch.float32, ()),
    "adding": ((50, 2), 1, "regression", torch.float32, (1,)),
    "copy": ((30, 10), 10, "sequence_transduction", torch.float32, (30,)),
    "reverse": ((8, 10), 10, "sequence_transduction", torch.float32, (8,)),
    "text": ((64,), None, "language_modelling", torch.int64, (64,)),
}


@pytest.mark.parametrize("name", SHAPES)
def test_shapes_and_tasks(name):
    shape, n_out, task, dtype, target = SHAPES[name]
    s = load_dataset(name)
    assert s.input_shape == shape and s.task == task and s.x_train.dtype == dtype
    assert tuple(s.y_val.shape[1:]) == target
    assert n_out is None or s.n_outputs == n_out
    assert len(s.x_train) > len(s.x_val) > 0 and len(s.x_test) > 0


def test_diabetes_target_is_standardised():
    s = load_dataset("diabetes")
    y = torch.cat([s.y_train, s.y_val, s.y_test])
    assert abs(y.mean().item()) < 1e-5
    assert y.std(unbiased=False).item() == pytest.approx(1, abs=1e-4)


def test_seq_digits_are_the_digit_images_row_by_row():
    from hypersweep.models.data import digits
    assert np.array_equal(seq_digits().x, digits().x[:, 0])


def test_adding_target_is_the_sum_of_the_two_marked_values():
    raw = adding(length=20, n=50)
    values, marks = raw.x[..., 0], raw.x[..., 1]
    assert raw.x.shape == (50, 20, 2) and (marks.sum(1) == 2).all()
    assert (marks[:, :10].sum(1) == 1).all()          # one mark in each half
    assert np.allclose((values * marks).sum(1), raw.y[:, 0], atol=1e-6)


def test_copy_targets_repeat_the_symbols_after_the_delimiter():
    raw = copy(delay=5, symbols=4, n=20)
    tokens = raw.x.argmax(-1)
    assert raw.x.shape == (20, 13, 10)
    assert (tokens[:, 8] == 9).all()                  # the delimiter, just before the copy
    assert np.array_equal(raw.y[:, -4:], tokens[:, :4]) and (raw.y[:, :-4] == 0).all()


def test_reverse_targets_are_the_inputs_reversed():
    raw = reverse(length=6, vocab=7, n=30)
    assert raw.x.shape == (30, 6, 7) and raw.class_names == tuple("0123456")
    assert np.array_equal(raw.y, raw.x.argmax(-1)[:, ::-1])


def test_default_corpus_is_deterministic_and_ascii():
    a, b = stdlib_docstrings(5000), stdlib_docstrings(5000)
    assert a == b and len(a) == 5000
    assert all(32 <= ord(c) < 127 or c == "\n" for c in a)


def test_text_windows_are_shifted_by_one(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("abcdefghij" * 30)
    raw = text(path=str(f), window=8)
    assert raw.class_names == tuple("abcdefghij")
    assert raw.x.shape == (37, 8) and np.array_equal(raw.x[:, 1:], raw.y[:, :-1])
    assert "".join(raw.class_names[i] for i in raw.x[0]) == "abcdefgh"


def test_text_options_and_missing_file(tmp_path):
    assert set(dataset_options("text")) == {"path", "window", "max_chars"}
    with pytest.raises(UserError, match="^data.options.path: no such text file: /nowhere"):
        load_dataset("text", path="/nowhere/at/all.txt")
    with pytest.raises(UserError, match=f"^data.options.path: {tmp_path} is a directory; name a "):
        load_dataset("text", path=str(tmp_path))
    with pytest.raises(UserError, match="^data.options.window:"):
        load_dataset("text", window=1)


@pytest.mark.parametrize("name,options,key", [
    ("adding", {"length": 1}, "length"), ("copy", {"delay": 0}, "delay"),
    ("reverse", {"vocab": 100}, "vocab"), ("moons", {"noise": -1.0}, "noise"),
    ("adding", {"lenght": 5}, "lenght"),
])
def test_bad_options_are_user_errors(name, options, key):
    with pytest.raises(UserError, match=f"^data.options.{key}:"):
        load_dataset(name, **options)


def test_options_change_the_data():
    assert load_dataset("adding", length=10).input_shape == (10, 2)
    assert load_dataset("reverse", length=4, vocab=5).input_shape == (4, 5)
    assert load_dataset("copy", delay=3, symbols=2).input_shape == (7, 10)


def text_error(path) -> str:
    with pytest.raises(UserError) as e:
        load_dataset("text", path=str(path), window=8)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_an_empty_text_file_is_named(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert text_error(tmp_path / "empty.txt") == f"data.options.path: {tmp_path}/empty.txt is empty"
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")    # a byte-order mark, no text
    assert text_error(tmp_path / "bom.txt") == f"data.options.path: {tmp_path}/bom.txt is empty"


def test_a_text_file_that_is_not_utf8_is_an_error_with_the_offset(tmp_path):
    (tmp_path / "latin.txt").write_bytes(("café " * 500).encode("latin-1"))
    assert text_error(tmp_path / "latin.txt") == (
        f"data.options.path: {tmp_path}/latin.txt is not UTF-8: byte 0xe9 at offset 3 does not "
        "decode; the file must be UTF-8 text")


def test_utf8_text_is_read_up_to_max_chars_only(tmp_path):
    f = tmp_path / "t.txt"
    # A BOM, 'é' (2 bytes) and '€' (3 bytes): characters, not bytes, are counted.
    f.write_bytes(b"\xef\xbb\xbf" + ("ab\u00e9\u20ac" * 100).encode() + b"\xff never read")
    raw = text(path=str(f), window=8, max_chars=100)
    assert raw.class_names == ("a", "b", "\u00e9", "\u20ac")
    assert raw.x.shape == (12, 8)
    assert "".join(raw.class_names[i] for i in raw.x[0]) == "ab\u00e9\u20acab\u00e9\u20ac"
    # A bad byte past the characters used does no harm, even within the bytes read.
    g = tmp_path / "u.txt"    # another name: loaders are cached by their options
    g.write_bytes(b"abcd" * 30 + b"\xff")
    assert text(path=str(g), window=8, max_chars=100).class_names == tuple("abcd")


@pytest.mark.parametrize("name,noise,said", [
    ("moons", float("nan"), "must be a finite number, got nan"),   # crashed in scikit-learn
    ("xor", float("nan"), "must be a finite number, got nan"),     # every trial's loss was NaN
    ("moons", float("inf"), "must be a finite number, got inf"),
    ("xor", float("inf"), "must be a finite number, got inf"),
])
def test_a_noise_that_is_not_a_finite_number_is_refused(name, noise, said):
    with pytest.raises(UserError) as e:
        load_dataset(name, noise=noise)
    assert str(e.value) == f"data.options.noise: {said}"


@pytest.mark.parametrize("name,options,said", [
    ("moons", {"n": 10**11}, "n: must be <= 50000000 here, got 100000000000 (a sample holds 2"),
    ("xor", {"n": 10**11}, "n: must be <= 50000000 here, got 100000000000 (a sample holds 2"),
    ("adding", {"n": 10**11}, "n: must be <= 1000000 here, got 100000000000 (a sample holds 100"),
    ("copy", {"n": 10**11}, "n: must be <= 333333 here, got 100000000000 (a sample holds 300"),
    ("reverse", {"n": 10**11}, "n: must be <= 1250000 here, got 100000000000 (a sample holds 80"),
    ("adding", {"length": 10**8}, "length: 100000000 makes samples of 200000000 values, too many"),
    ("copy", {"delay": 10**9}, "delay: 1000000000 makes samples of 10000000200 values, too many"),
    ("reverse", {"length": 10**9}, "length: 1000000000 makes samples of 10000000000 values, too"),
])
def test_a_dataset_too_large_for_memory_is_refused_before_it_is_generated(name, options, said):
    # These were MemoryError tracebacks; now one line naming the option, saying why.
    with pytest.raises(UserError) as e:
        load_dataset(name, **options)
    assert str(e.value).startswith(f"data.options.{said}") and "\n" not in str(e.value)
    assert "to fit in memory" in str(e.value)


def test_the_memory_bound_on_n_is_exact(monkeypatch):
    import hypersweep.models.data as data
    monkeypatch.setattr(data, "MAX_VALUES", 100)
    assert len(data.moons.__wrapped__(n=50).y) == 50      # uncached: 50 samples of 2 values
    with pytest.raises(UserError, match=r"^data.options.n: must be <= 50 here, got 51 "):
        data.moons.__wrapped__(n=51)
