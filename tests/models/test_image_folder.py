"""The `images` dataset (one folder per class) on small image files written with
Pillow: PNG, JPEG, BMP, GIF, WebP, greyscale, RGBA, 16-bit, non-square, rotated by
EXIF, corrupt; and a study run on such a folder from the CLI."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from hypersweep.cli.app import app
from hypersweep.models.data import load_dataset
from hypersweep.models.errors import UserError
from hypersweep.models.image_folder import images
from tests.conftest import study_runs

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def solid(path: Path, colour, size: tuple[int, int] = (8, 8), mode: str = "RGB",
          **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, **save)
    return path


def load(root: Path, **options):
    """The loader's raw arrays, read afresh (results are cached per option values)."""
    images.cache_clear()
    return images(root=str(root), **options)


def error(root: Path | str, **options) -> str:
    images.cache_clear()
    with pytest.raises(UserError) as e:
        load_dataset("images", root=str(root), **options)
    return str(e.value)


def two_classes(root: Path, n: int = 4) -> Path:
    for i in range(n):
        solid(root / "cat" / f"{i}.png", RED)
        solid(root / "dog" / f"{i}.png", BLUE)
    return root


def test_reads_every_format_with_its_class_in_sorted_path_order(tmp_path):
    # Written out of order: the order read is the sorted paths', not the disk's.
    solid(tmp_path / "zebra" / "b.PNG", BLUE)
    solid(tmp_path / "zebra" / "a.png", GREEN)
    solid(tmp_path / "zebra" / "sub" / "deeper" / "c.bmp", RED)
    solid(tmp_path / "ant" / "x.JPG", RED, format="JPEG", quality=95)
    solid(tmp_path / "ant" / "w.gif", (0, 0, 255))
    solid(tmp_path / "ant" / "v.webp", GREEN, lossless=True)
    solid(tmp_path / "ant" / "u.jpeg", WHITE, format="JPEG")
    raw = load(tmp_path, size=4)
    assert raw.class_names == ("ant", "zebra")
    assert raw.x.shape == (7, 3, 4, 4) and raw.x.dtype == np.float32
    assert raw.y.dtype == np.int64 and raw.y.tolist() == [0, 0, 0, 0, 1, 1, 1]
    colours = [tuple(np.round(img.mean(axis=(1, 2)), 1)) for img in raw.x]
    assert colours == [(1, 1, 1), (0, 1, 0), (0, 0, 1), (1, 0, 0),   # u, v, w, x
                       (0, 1, 0), (0, 0, 1), (1, 0, 0)]              # a, b, sub/deeper/c
    assert raw.x.min() >= 0.0 and raw.x.max() <= 1.0
    # Exact where the format is lossless: a solid PNG is exactly 0 and 1.
    assert set(np.unique(raw.x[4:])) == {0.0, 1.0}
    again = load(tmp_path, size=4)
    assert np.array_equal(again.x, raw.x) and np.array_equal(again.y, raw.y)


def test_the_splits_hold_every_image_once(tmp_path):
    for k, colour in enumerate((RED, GREEN, BLUE)):
        for i in range(10):
            solid(tmp_path / f"c{k}" / f"{i}.png", tuple(int(c * i / 10) for c in colour))
    images.cache_clear()
    s = load_dataset("images", root=str(tmp_path), size=6, val_fraction=0.2, test_fraction=0.2)
    assert s.input_shape == (3, 6, 6) and s.n_outputs == 3 and s.task == "classification"
    assert s.class_names == ("c0", "c1", "c2") and (len(s.y_train), len(s.y_val)) == (18, 6)
    assert np.bincount(s.y_test.numpy()).tolist() == [2, 2, 2]          # stratified
    raw = images(root=str(tmp_path), size=6)
    assert not raw.x.flags.writeable                                    # cached, shared


def test_a_non_square_image_is_cropped_to_its_centre_not_squashed(tmp_path):
    img = Image.new("RGB", (40, 20), RED)
    img.paste(Image.new("RGB", (20, 20), GREEN), (10, 0))    # the centred square is green
    img.paste(Image.new("RGB", (10, 20), BLUE), (30, 0))
    (tmp_path / "a").mkdir()
    img.save(tmp_path / "a" / "wide.png")
    solid(tmp_path / "b" / "tall.png", WHITE, size=(3, 50))
    raw = load(tmp_path, size=8)
    assert raw.x.shape == (2, 3, 8, 8)
    # Squashed, the two left columns would be red and the two right ones blue; the
    # edges take a little of the colour just outside the square (the filter's reach).
    assert raw.x[0, 1].min() > 0.8 and raw.x[0, [0, 2]].max() < 0.2
    assert np.allclose(raw.x[0, 1, :, 1:-1], 1) and np.allclose(raw.x[0, [0, 2], :, 1:-1], 0)
    assert np.allclose(raw.x[1], 1)                             # upscaled from 3x3


def test_resizing_averages_the_pixels(tmp_path):
    stripes = np.zeros((16, 16), np.uint8)
    stripes[:, ::2] = 255                                       # one-pixel stripes
    (tmp_path / "a").mkdir()
    Image.fromarray(stripes).save(tmp_path / "a" / "s.png")
    solid(tmp_path / "b" / "x.png", 0, mode="L")
    raw = load(tmp_path, size=4, channels=1)
    assert raw.x.shape == (2, 1, 4, 4)
    assert np.allclose(raw.x[0], 0.5, atol=0.05)                # antialiased, not sampled


def test_channels_convert_colour_greyscale_and_transparency(tmp_path):
    solid(tmp_path / "a" / "colour.png", (200, 100, 50))
    solid(tmp_path / "b" / "grey.png", 128, mode="L")
    rgba = Image.new("RGBA", (8, 8), (255, 255, 255, 255))
    rgba.paste(Image.new("RGBA", (4, 8), (255, 255, 255, 0)), (0, 0))   # left half clear
    (tmp_path / "c").mkdir()
    rgba.save(tmp_path / "c" / "rgba.png")
    grey = load(tmp_path, size=8, channels=1)
    assert grey.x.shape == (3, 1, 8, 8)
    luma = (200 * 299 + 100 * 587 + 50 * 114) / 1000 / 255      # ITU-R 601-2, Pillow's "L"
    assert np.allclose(grey.x[0], luma, atol=1 / 255)
    assert np.allclose(grey.x[1], 128 / 255)
    rgb = load(tmp_path, size=8, channels=3)
    assert rgb.x.shape == (3, 3, 8, 8)
    assert np.allclose(rgb.x[0].mean(axis=(1, 2)), np.array([200, 100, 50]) / 255)
    assert np.array_equal(rgb.x[1, 0], rgb.x[1, 2])             # grey: three equal channels
    # Transparent pixels are black, whatever colour they hide; opaque ones as they are.
    assert np.allclose(rgb.x[2, :, :, :4], 0) and np.allclose(rgb.x[2, :, :, 4:], 1)


def test_sixteen_bit_greyscale_keeps_its_range(tmp_path):
    deep = np.full((8, 8), 65535, np.uint16)
    deep[:, :4] = 32768
    (tmp_path / "a").mkdir()
    Image.fromarray(deep).save(tmp_path / "a" / "deep.png")
    solid(tmp_path / "b" / "x.png", 0, mode="L")
    raw = load(tmp_path, size=8, channels=1)
    assert np.allclose(raw.x[0, 0, :, :4], 32768 / 65535) and np.allclose(raw.x[0, 0, :, 4:], 1)


def test_exif_orientation_turns_the_image_upright(tmp_path):
    # Stored 16 wide x 8 high, red left and blue right; orientation 6 says "turn 90
    # degrees clockwise to view", so upright it is 8 x 16, red on top.
    img = Image.new("RGB", (16, 8), RED)
    img.paste(Image.new("RGB", (8, 8), BLUE), (8, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "a").mkdir()
    img.save(tmp_path / "a" / "phone.png", exif=exif)
    solid(tmp_path / "b" / "x.png", RED)
    x = load(tmp_path, size=8).x[0]
    assert np.allclose(x[0, :4], 1) and np.allclose(x[2, 4:], 1)   # top red, bottom blue
    assert np.allclose(x[2, :4], 0)


def test_limit_takes_images_from_the_classes_in_turn(tmp_path):
    for i in range(5):
        solid(tmp_path / "many" / f"{i}.png", (i * 50, 0, 0))
    for i in range(2):
        solid(tmp_path / "few" / f"{i}.png", (0, 0, i * 50))
    raw = load(tmp_path, limit=6, size=2)
    # few: both; many: the first four in path order (not the first six paths: few's only)
    assert raw.class_names == ("few", "many") and raw.y.tolist() == [0, 0, 1, 1, 1, 1]
    assert np.round(raw.x[2:, 0, 0, 0] * 255).tolist() == [0, 50, 100, 150]
    assert len(load(tmp_path, limit=100).y) == 7
    assert error(tmp_path, limit=1) == (
        "data.options.limit: 1 images cannot hold one of each of the 2 classes; use at least 2 "
        "(a split needs more), or 0 for all")
    assert error(tmp_path, limit=-1) == "data.options.limit: must be >= 0, got -1"


def test_extensions_choose_the_files_read_and_hidden_ones_are_skipped(tmp_path):
    two_classes(tmp_path, 2)
    solid(tmp_path / "cat" / "photo.JPG", RED, format="JPEG")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble")   # macOS metadata
    solid(tmp_path / ".ipynb_checkpoints" / "0.png", RED)
    assert len(load(tmp_path).y) == 5
    assert len(load(tmp_path, extensions="png").y) == 4
    assert len(load(tmp_path, extensions=" .Jpg, PNG jpg").y) == 5
    assert error(tmp_path, extensions=" , ") == (
        "data.options.extensions: no file extensions in ' , '; give some, comma-separated "
        "(default: png,jpg,jpeg,bmp,gif,webp)")
    assert error(tmp_path, extensions="png,heic").startswith(
        "data.options.extensions: Pillow cannot read 'heic' files; valid: ")
    from hypersweep.models.data import _checked_options                    # a YAML list too
    assert _checked_options("images", {"extensions": ["png", "jpg"]}) == {
        "extensions": "png, jpg"}
    assert error(tmp_path, extensions=[1]) == (
        "data.options.extensions: expected a string, got a list [1]")


def test_a_folder_without_images_is_named(tmp_path):
    two_classes(tmp_path)
    (tmp_path / "eel").mkdir()
    assert error(tmp_path) == (
        "data.options.root: class folder 'eel' holds no images; data.options.extensions reads "
        "png, jpg, jpeg, bmp, gif, webp; add images, or remove the folder")
    (tmp_path / "eel" / "a.tif").write_bytes(b"II*\0")
    (tmp_path / "eel" / "b.TIF").write_bytes(b"II*\0")
    assert error(tmp_path, extensions="png").startswith(
        "data.options.root: class folder 'eel' holds no images, only 2 other files (.tif); "
        "data.options.extensions reads png;")


@pytest.mark.parametrize("content,why", [
    (b"these are not pixels", "is not an image (BMP, GIF, JPEG, PNG, WEBP expected)"),
    (None, "is not a readable image (image file is truncated"),
])
def test_a_file_that_is_not_a_readable_image_is_named(tmp_path, content, why):
    two_classes(tmp_path)
    bad = tmp_path / "dog" / "2.png"
    if content is None:   # a real PNG, cut short
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(bad)
        content = bad.read_bytes()[:-200]
    bad.write_bytes(content)
    message = error(tmp_path)
    assert message.startswith(f"data.options.root: {bad} {why}")
    assert message.endswith("; fix or remove the file")


def test_an_image_past_pillow_s_warning_size_is_read_without_a_warning(tmp_path, monkeypatch):
    """Pillow warns of a "decompression bomb" past 89 megapixels and refuses past twice
    that: such a photo is read (shrunk) with no warning; one past the limit is named."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)   # 64 x 32 past it, 64 x 64 twice
    two_classes(tmp_path)
    solid(tmp_path / "cat" / "large.png", RED, size=(64, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = load(tmp_path, size=8).x
    assert x.shape == (9, 3, 8, 8)
    solid(tmp_path / "dog" / "huge.png", BLUE, size=(64, 64))
    assert error(tmp_path).startswith(f"data.options.root: {tmp_path / 'dog' / 'huge.png'} is "
                                      "not a readable image (Image size (4096 pixels) exceeds")


def test_a_bad_root_says_what_it_must_be(tmp_path):
    assert error("") == ("data.options.root: not set; give the directory of your images, one "
                         "folder per class (root/cat/*.jpg, root/dog/*.jpg)")
    assert error(tmp_path / "nope") == (f"data.options.root: {tmp_path / 'nope'} does not exist; "
                                        "give the directory that holds one folder per class")
    a_file = solid(tmp_path / "x.png", RED)
    assert error(a_file) == (f"data.options.root: {a_file} is a file; give the directory that "
                             "holds one folder per class")
    assert error(tmp_path) == (
        f"data.options.root: {tmp_path} holds 1 images but no folders; put each class's images "
        "in a folder named after the class (root/cat/*.jpg, root/dog/*.jpg)")
    (tmp_path / "cat").mkdir()
    solid(tmp_path / "cat" / "0.png", RED)
    assert error(tmp_path) == (f"data.options.root: {tmp_path} has one class folder ('cat'); "
                               "classification needs at least 2, one folder per class")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert error(empty) == (f"data.options.root: {empty} holds no folders; put each class's "
                            "images in a folder named after the class (root/cat/*.jpg, "
                            "root/dog/*.jpg)")


def test_bad_size_and_channels_are_named(tmp_path):
    two_classes(tmp_path)
    assert error(tmp_path, size=0) == "data.options.size: must be >= 1, got 0"
    assert error(tmp_path, channels=2) == ("data.options.channels: must be 1 (greyscale) or "
                                           "3 (RGB), got 2")
    assert error(tmp_path, channels="3") == "data.options.channels: expected an integer, got text '3'"
    assert error(tmp_path, size=10_000) == (
        "data.options.size: 8 images of 3x10000x10000 make 2,400,000,000 values, more than "
        "the 1,000,000,000 (4 GB as float32) loaded into memory at most; use size 6454 or "
        "less, or set data.options.limit")
    assert error(tmp_path, colour=1).startswith("data.options.colour: unknown option 'colour'")


def test_a_folder_too_small_to_split_says_what_to_change(tmp_path):
    for name, n in (("cat", 3), ("dog", 3), ("eel", 3)):
        for i in range(n):
            solid(tmp_path / name / f"{i}.png", RED)
    assert error(tmp_path) == (
        "data.test_fraction: a test split of 2 (of 9 samples) is fewer than the 3 classes; "
        "raise data.test_fraction or use data of at least 15 samples")
    for i in (1, 2):
        (tmp_path / "eel" / f"{i}.png").unlink()
    assert error(tmp_path, test_fraction=0.0) == (
        "data.options.root: 7 samples leave class 2 (eel) with a single sample; a stratified "
        "split needs at least 2 of each class; the data need more samples of each class")


def test_a_study_runs_on_an_image_folder_from_the_cli(tmp_path, stores, monkeypatch):
    for k, colour in enumerate((RED, GREEN, BLUE)):
        for i in range(8):
            ext, save = (("jpg", {"format": "JPEG"}) if i % 2 else ("png", {}))
            solid(tmp_path / "pics" / f"class_{k}" / f"{i}.{ext}", colour, size=(12, 10), **save)
    config = {
        "study": "pics", "model": "lenet",
        "data": {"name": "images", "options": {"root": "pics", "size": 12},   # relative
                 "val_fraction": 0.25, "test_fraction": 0.25},
        "params": {"epochs": 2, "batch_size": 8, "augment": "shift_flip"},
        "space": {"lr": {"loguniform": [1e-3, 1e-2]}},
        "search": {"strategy": "random", "trials": 1, "seed": 0},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(path), "--executor", "serial", "--trials", "2",
                              *stores.cli_args()], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    parent, children = study_runs(stores.mlflow_uri, "pics")
    assert [c.data.tags["state"] for c in children] == ["COMPLETE", "COMPLETE"]
    assert all(0 <= c.data.metrics["val_accuracy"] <= 1 for c in children)
    artifacts = MlflowClient(stores.mlflow_uri).list_artifacts(children[0].info.run_id)
    assert "confusion_matrix.png" in {a.path for a in artifacts}

    # validate: a bad option is one line, exit code 2.
    bad = tmp_path / "bad.yaml"
    config["data"]["options"]["root"] = "missing"
    bad.write_text(yaml.safe_dump(config))
    res = runner.invoke(app, ["validate", str(bad)], catch_exceptions=False)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"error: data.options.root: {(tmp_path / 'missing').resolve()} does not exist; give "
        "the directory that holds one folder per class"]
