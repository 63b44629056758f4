"""`images`: a user's own pictures, one folder per class (Keras's
`image_dataset_from_directory`, torchvision's `ImageFolder`).

    root/
      cat/  001.jpg  002.png  kittens/003.jpg
      dog/  a.jpeg   b.webp

The classes are the folders directly under `data.options.root`, in sorted order
(label 0 is the first); a class holds every image under its folder, nested folders
included. Files and folders whose names start with a dot are skipped (macOS's `._x.jpg`
copies, `.ipynb_checkpoints`), and so are files with other extensions. Images are
read in sorted path order with Pillow, turned upright as their EXIF orientation says,
transparent pixels composited over black, cut to their largest centred square and
resized to `size` x `size` (antialiased bilinear); 16-bit greyscale keeps its range.
A file that cannot be read is an error naming it, never skipped: a silently smaller
class would skew every trial. Pixels are scaled to [0, 1].
"""
from __future__ import annotations

import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from hypersweep.models.data import RawData, _frozen, dataset, printable_name
from hypersweep.models.errors import UserError, check_at_least, first_line

EXTENSIONS = "png,jpg,jpeg,bmp,gif,webp"
# Values (pixels x channels) of all the images together: 4 GB as float32, which the
# splits copy once more. A typo (`size: 2560`) is an error before any file is read.
MAX_VALUES = 1_000_000_000
THREADS = 8           # Pillow decodes and resizes outside the GIL


@dataset("images")
def images(root: str = "", size: int = 32, channels: int = 3, limit: int = 0,
           extensions: str = EXTENSIONS) -> RawData:
    """Your own images, one folder per class under `root`, resized to (channels, size,
    size). `channels`: 1 (greyscale) or 3 (RGB). `limit` > 0 keeps that many images
    in all, taken from the classes in turn (the first of each class, then the second,
    ...). `extensions`: the file types read, comma-separated, any case."""
    check_at_least(1, "data.options", size=size)
    check_at_least(0, "data.options", limit=limit)
    if channels not in (1, 3):
        raise UserError(f"data.options.channels: must be 1 (greyscale) or 3 (RGB), "
                        f"got {channels}")
    exts = _extensions(extensions)
    folder = _root(root)
    classes = _classes(folder, exts)
    files = _limited(classes, limit)
    n = sum(len(paths) for paths in files.values())
    _check_memory(n, channels, size, limit)
    paths = [p for paths in files.values() for p in paths]
    x = _read_all(paths, size, channels, exts)
    y = np.repeat(np.arange(len(files), dtype=np.int64), [len(p) for p in files.values()])
    return _frozen(RawData(x, y, class_names=tuple(printable_name(c) for c in files)))


def _extensions(text: str) -> tuple[str, ...]:
    """`"png, .JPG jpeg"` -> ("png", "jpg", "jpeg"); each one Pillow can read."""
    from PIL import Image, ImageFile

    exts = tuple(dict.fromkeys(e.lstrip(".").lower() for e in re.split(r"[\s,]+", text) if e))
    if not exts or not all(exts):
        raise UserError(f"data.options.extensions: no file extensions in {text!r}; give "
                        f"some, comma-separated (default: {EXTENSIONS})")
    # Stub formats (BUFR, GRIB, HDF5) are registered but need a handler to open.
    stub = lambda f: isinstance(Image.OPEN[f][0], type) and issubclass(  # noqa: E731
        Image.OPEN[f][0], ImageFile.StubImageFile)
    readable = {e.lstrip("."): f for e, f in Image.registered_extensions().items()
                if f in Image.OPEN and not stub(f)}
    for e in exts:
        if e not in readable:
            raise UserError(f"data.options.extensions: Pillow cannot read '{e}' files; "
                            f"valid: {', '.join(sorted(readable))}")
    return exts


def _root(root: str) -> Path:
    if not root:
        raise UserError("data.options.root: not set; give the directory of your images, "
                        "one folder per class (root/cat/*.jpg, root/dog/*.jpg)")
    folder = Path(root).expanduser()
    if folder.is_file():
        raise UserError(f"data.options.root: {folder} is a file; give the directory that "
                        "holds one folder per class")
    if not folder.is_dir():
        raise UserError(f"data.options.root: {folder} does not exist; give the directory "
                        "that holds one folder per class")
    return folder


def _classes(folder: Path, exts: tuple[str, ...]) -> dict[str, list[Path]]:
    """Each class folder's name and its images, in sorted order."""
    names = sorted(e.name for e in _entries(folder) if e.is_dir())
    if not names:
        loose = sum(1 for e in _entries(folder) if e.is_file() and _is_image(e.name, exts))
        held = f"holds {loose} images but no folders" if loose else "holds no folders"
        raise UserError(f"data.options.root: {folder} {held}; put each class's images in a "
                        "folder named after the class (root/cat/*.jpg, root/dog/*.jpg)")
    if len(names) < 2:
        raise UserError(f"data.options.root: {folder} has one class folder "
                        f"('{printable_name(names[0])}'); "
                        "classification needs at least 2, one folder per class")
    classes = {}
    for name in names:
        paths = sorted(_files(folder / name), key=lambda p: p.relative_to(folder).parts)
        images = [p for p in paths if _is_image(p.name, exts)]
        if not images:
            kinds = sorted({p.suffix.lower() or p.name for p in paths})
            others = (f", only {len(paths)} other file{'s' * (len(paths) > 1)} "
                      f"({', '.join(kinds[:5])}{', ...' * (len(kinds) > 5)})") if paths else ""
            raise UserError(f"data.options.root: class folder '{printable_name(name)}' holds "
                            f"no images{others}; data.options.extensions reads {', '.join(exts)}; "
                            "add images, or remove the folder")
        classes[name] = images
    return classes


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError as e:
        raise UserError(f"data.options.root: cannot list {folder}: "
                        f"{e.strerror or first_line(e)}") from None


def _files(folder: Path, seen: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Every file under `folder`, following links to folders but not round a loop."""
    real = os.path.realpath(folder)
    if real in seen:
        return
    for entry in _entries(folder):
        if entry.is_dir():
            yield from _files(Path(entry.path), seen | {real})
        elif entry.is_file():
            yield Path(entry.path)


def _is_image(name: str, exts: tuple[str, ...]) -> bool:
    return "." in name and name.rpartition(".")[2].lower() in exts


def _limited(classes: dict[str, list[Path]], limit: int) -> dict[str, list[Path]]:
    """`limit` images in all, from the classes in turn, so that each class keeps as
    many as it can (the first `limit` paths would be the first classes only)."""
    if not limit or limit >= sum(len(p) for p in classes.values()):
        return classes
    if limit < len(classes):
        raise UserError(f"data.options.limit: {limit} images cannot hold one of each of the "
                        f"{len(classes)} classes; use at least {len(classes)} (a split needs "
                        "more), or 0 for all")
    keep = dict.fromkeys(classes, 0)
    while limit:
        for name, paths in classes.items():
            if limit and keep[name] < len(paths):
                keep[name] += 1
                limit -= 1
    return {name: paths[:keep[name]] for name, paths in classes.items()}


def _check_memory(n: int, channels: int, size: int, limit: int) -> None:
    values = n * channels * size * size
    if values <= MAX_VALUES:
        return
    largest = int((MAX_VALUES / (n * channels)) ** 0.5)
    fix = f"use size {largest} or less" if largest >= 1 else "lower data.options.limit"
    raise UserError(f"data.options.size: {n} images of {channels}x{size}x{size} make "
                    f"{values:,} values, more than the {MAX_VALUES:,} ({MAX_VALUES * 4 / 1e9:g} GB "
                    f"as float32) loaded into memory at most; {fix}"
                    + ("" if limit else ", or set data.options.limit"))


def _read_all(paths: list[Path], size: int, channels: int,
              exts: tuple[str, ...]) -> np.ndarray:
    x = np.empty((len(paths), channels, size, size), dtype=np.float32)
    formats = _formats(exts)

    def read(i: int) -> None:
        x[i] = read_image(paths[i], size, channels, formats)

    from PIL import Image

    workers = max(1, min(THREADS, os.cpu_count() or 1, len(paths)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="images")
    # A photo past Pillow's warning size (89 megapixels) is read as any other, shrunk
    # to `size`: no two-line warning each; past twice that, Pillow's error names it.
    with warnings.catch_warnings():     # the filters are the process's: the threads' too
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            for _ in pool.map(read, range(len(paths))):    # in order: the first bad file is named
                pass
        finally:
            pool.shutdown(cancel_futures=True)
    return x


def _formats(exts: tuple[str, ...]) -> tuple[str, ...]:
    """Pillow's formats of the extensions: the only decoders a file is offered to (a
    JPEG saved as .png still opens; an EPS saved as .png does not run Ghostscript)."""
    from PIL import Image

    registered = Image.registered_extensions()
    return tuple(sorted({registered[f".{e}"] for e in exts}))


def read_image(path: Path, size: int, channels: int,
               formats: tuple[str, ...] | None = None) -> np.ndarray:
    """One image as (channels, size, size) float32 in [0, 1]: upright, its largest
    centred square, resized; a UserError naming the file if Pillow cannot read it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path, formats=formats) as img:
            img.draft("L" if channels == 1 else "RGB", (size, size))   # JPEG: decode smaller
            return _pixels(img, size, channels)
    except UnidentifiedImageError:
        why = f"not an image ({', '.join(formats)} expected)" if formats else "not an image"
    except Exception as e:   # noqa: BLE001 - a decoder can fail in any way: name the file
        why = f"not a readable image ({first_line(e)})"
    raise UserError(f"data.options.root: {path} is {why}; fix or remove the file")


def _pixels(img, size: int, channels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)),
                                    img.convert("RGBA"))
    if img.mode.startswith("I"):
        # 16-bit greyscale: convert("L") would clip at 255, not scale.
        img, scale = img.convert("F"), 1 / 65535
    else:
        img, scale = img.convert("L" if channels == 1 else "RGB"), 1 / 255
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    img = img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side),
                     reducing_gap=2.0)
    a = np.asarray(img, dtype=np.float32) * scale
    if a.ndim == 2:
        a = np.repeat(a[None], channels, axis=0)
    else:
        a = a.transpose(2, 0, 1)
    return np.clip(a, 0.0, 1.0)
