from __future__ import annotations

import numpy as np
import pytest
import torch

from hypersweep.models.data import dataset_names, dataset_options, digits, load_dataset
from hypersweep.models.errors import OutOfRange, UserError, check_at_least, check_fraction


def rows(*xs: torch.Tensor) -> list[bytes]:
    return sorted(r.tobytes() for x in xs for r in x.reshape(len(x), -1).numpy())


def test_digits_splits_partition_the_dataset():
    s = load_dataset("digits")
    sizes = [len(s.y_train), len(s.y_val), len(s.y_test)]
    assert sum(sizes) == 1797 and sizes[1] == sizes[2] == 359
    # Together the three splits hold every image exactly once.
    assert rows(s.x_train, s.x_val, s.x_test) == rows(torch.tensor(digits().x))
    assert s.input_shape == (1, 8, 8) and s.x_train.shape[1:] == (1, 8, 8)
    assert s.n_outputs == 10 and s.task == "classification" and s.name == "digits"
    assert s.class_names == tuple("0123456789")
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    assert 0.0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1.0


def test_split_is_stratified():
    s = load_dataset("digits", val_fraction=0.2, test_fraction=0.2)
    counts = torch.bincount(s.y_val, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_split_depends_on_split_seed_only():
    a, b = load_dataset("digits", split_seed=3), load_dataset("digits", split_seed=3)
    c = load_dataset("digits", split_seed=4)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_val, c.x_val)


def test_fractions_set_the_sizes():
    s = load_dataset("digits", val_fraction=0.1, test_fraction=0.0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (1617, 180, 0)


@pytest.mark.parametrize("kwargs,key", [
    ({"val_fraction": 0.0}, "data.val_fraction"),
    ({"val_fraction": 1.5}, "data.val_fraction"),
    ({"test_fraction": -0.1}, "data.test_fraction"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.val_fraction"),
    ({"val_fraction": 0.001}, "data.val_fraction"),    # 2 samples cannot hold 10 classes
])
def test_bad_fractions_are_user_errors(kwargs, key):
    with pytest.raises(UserError, match=f"^{key}:"):
        load_dataset("digits", **kwargs)


def test_unknown_dataset_says_did_you_mean():
    assert {"digits", "xor"} <= set(dataset_names())
    with pytest.raises(UserError, match=r"^data.name: unknown dataset 'digit' \(did you mean 'digits'\?\)"):
        load_dataset("digit")


def test_unknown_or_mistyped_option_is_a_user_error():
    with pytest.raises(UserError, match="^data.options.nois: unknown option 'nois' "
                                        r"\(did you mean 'noise'\?\)"):
        load_dataset("xor", nois=0.1)
    with pytest.raises(UserError, match="^data.options.n: expected an integer"):
        load_dataset("xor", n="many")
    with pytest.raises(UserError, match="^data.options.size: dataset 'digits' takes no options"):
        load_dataset("digits", size=3)
    assert set(dataset_options("xor")) == {"noise", "n"}


def test_xor_is_the_four_points_in_every_split():
    s = load_dataset("xor")
    expected_x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.float32)
    for x, y in [(s.x_train, s.y_train), (s.x_val, s.y_val), (s.x_test, s.y_test)]:
        assert torch.equal(x, expected_x) and y.tolist() == [0, 1, 1, 0]
    assert s.input_shape == (2,) and s.n_outputs == 2


def test_noisy_xor_cloud_is_split_and_fixed():
    a = load_dataset("xor", noise=0.1, n=100, val_fraction=0.2, test_fraction=0.2)
    b = load_dataset("xor", noise=0.1, n=100, val_fraction=0.2, test_fraction=0.2)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (60, 20, 20)
    assert torch.equal(a.x_train, b.x_train)
    assert not np.allclose(a.x_train.numpy() % 1, 0)   # the points are jittered


def test_cached_arrays_are_read_only():
    with pytest.raises(ValueError):
        digits().x[0, 0, 0, 0] = 1.0


def message(**kwargs) -> str:
    name = kwargs.pop("name", "digits")
    with pytest.raises(UserError) as e:
        load_dataset(name, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_splits_too_small_for_the_classes_say_which_key_to_change():
    assert message(val_fraction=0.001) == (
        "data.val_fraction: a val split of 2 (of 1797 samples) is fewer than the 10 classes; "
        "raise data.val_fraction")
    assert message(val_fraction=0.5, test_fraction=0.497) == (
        "data.val_fraction: a train split of 6 (of 1797 samples) is fewer than the 10 classes; "
        "lower data.val_fraction or data.test_fraction")
    # xor's n=3 points are the corners 00, 01, 10: class 0 has one of them.
    assert message(name="xor", n=3) == (
        "data.options.n: 3 samples leave class 0 with a single sample; a stratified split "
        "needs at least 2 of each class; raise data.options.n (now 3)")
    assert message(name="xor", n=6, test_fraction=0.1) == (
        "data.options.n: a test split of 1 (of 6 samples) is fewer than the 2 classes; raise "
        "data.options.n to at least 20 or raise data.test_fraction")


@pytest.mark.parametrize("check", [
    lambda: check_at_least(0, "data.options", noise=float("nan")),
    lambda: check_fraction("params", dropout=float("nan")),
])
def test_nan_is_out_of_range(check):
    # NaN compares false to every number: a `value < low` test let it through.
    with pytest.raises(OutOfRange, match=r": must be .*, got nan$"):
        check()


@pytest.mark.parametrize("name,kwargs,least", [
    ("digits", {"test_fraction": 1e-9}, "0.00556"),    # 10 of 1797: one of each class
    ("diabetes", {"test_fraction": 0.001}, "0.00226"),  # 1 of 442 (regression)
    ("moons", {"n": 12, "test_fraction": 0.01}, "0.167"),  # 2 of 12
])
def test_a_test_fraction_that_rounds_to_no_rows_is_refused(name, kwargs, least):
    # It gave an empty test split, which `final` then reported as test_fraction 0.
    with pytest.raises(UserError) as e:
        load_dataset(name, **kwargs)
    n = {"digits": 1797, "diabetes": 442, "moons": 12}[name]
    assert str(e.value) == (f"data.test_fraction: {kwargs['test_fraction']} of {n} samples "
                            f"leaves an empty test split; raise it to at least {least}, or set "
                            "it to 0 for none")
    # The fraction it suggests is enough.
    s = load_dataset(name, **{**kwargs, "test_fraction": float(least)})
    assert len(s.y_test) == round(n * float(least)) >= 1


def test_a_val_fraction_that_rounds_to_no_rows_is_refused():
    with pytest.raises(UserError, match=r"^data.val_fraction: 0.01 .* empty split of 12 "):
        load_dataset("moons", n=12, val_fraction=0.01)


def test_no_samples_at_all_is_an_empty_split_not_a_crash():
    from hypersweep.models.data import RawData, _split
    raw = RawData(np.zeros((0, 2), np.float32), np.zeros(0, np.int64), class_names=("0", "1"))
    with pytest.raises(UserError, match=r"^data.val_fraction: .* empty split of 0 samples$"):
        _split(raw, 0.2, 0.2, 0, ("data.name", 0))


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_a_bad_split_seed_is_named(seed):
    # scikit-learn's error for the seed was reported as a failed stratification.
    with pytest.raises(UserError) as e:
        load_dataset("digits", split_seed=seed)
    assert str(e.value) == (f"data.split_seed: must be an integer from 0 to 2**32 - 1, "
                            f"got {seed!r}")


def test_a_held_out_split_without_some_class_is_noted():
    """3 of 600 samples in one class: stratified, the validation split gets none, and
    a model that never predicts the class scored val_f1 1.0 with nothing said."""
    from hypersweep.models.data import RawData, _missing_classes
    y = np.zeros(600, dtype=np.int64)
    y[:3] = 1
    raw = RawData(np.zeros((600, 2), dtype=np.float32), y, class_names=("no", "yes"))
    val, test = np.arange(3, 123), np.arange(0, 10)
    assert _missing_classes(raw, val, test) == (
        "data.val_fraction: the val split holds no sample of class yes (3 in all): its metrics "
        "leave it out (a model that never predicts it can score a val_f1 of 1.0 there); raise "
        "data.val_fraction, or gather more samples of it",)
    assert _missing_classes(raw, np.arange(0, 120), test) == ()
    assert _missing_classes(raw, np.arange(0, 120), np.arange(0)) == ()     # no test split
    assert _missing_classes(raw, np.arange(0, 120), np.arange(3, 9))[0].startswith(
        "data.test_fraction: the test split holds no sample of class yes (3 in all): its "
        "metrics leave it out (a model that never predicts it can score a test_f1 of 1.0")


def test_a_csv_file_with_a_rare_class_is_loaded_with_the_note(tmp_path):
    from hypersweep.models.data import load_dataset
    rows = ["a,y"] + [f"{i},{'yes' if i < 3 else 'no'}" for i in range(600)]
    (tmp_path / "rare.csv").write_text("\n".join(rows) + "\n")
    splits = load_dataset("csv", path=str(tmp_path / "rare.csv"))
    assert any(n.startswith("data.val_fraction: the val split holds no sample of class yes (3 "
                            "in all)") for n in splits.notes), splits.notes


def test_an_option_left_empty_says_what_to_give():
    """`features:` with nothing after it is YAML's null: not "expected str, got
    NoneType", when a list of names is as valid."""
    from hypersweep.models.data import load_dataset
    with pytest.raises(UserError) as e:
        load_dataset("csv", path="x.csv", features=None)
    assert str(e.value) == ("data.options.features: empty (null); give a value (or a list of "
                            "names), or leave the key out for its default ('')")


def test_an_empty_list_of_names_is_none_left_out():
    from hypersweep.models.data import _checked_options
    assert _checked_options("csv", {"exclude": [], "features": ["a", "b"]}) == \
        {"exclude": "", "features": "a, b"}
