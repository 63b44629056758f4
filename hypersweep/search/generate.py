"""New samples from a trained model: `hypersweep generate`.

A language model (`char_lm`) continues a prompt, character by character, sampled
at a temperature or decoded by beam search; a generator (`gan`, `vae`) draws
images from its latent space, written as a grid (.png) or an array (.npz). The
model comes back from MLflow as `predict`'s does (search/predict.py); a seed
makes the samples the same again.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np

from hypersweep.models.errors import UserError
from hypersweep.search.predict import Trained

GENERATES = ("language_modelling", "generation")
CHUNK = 1024        # images drawn per forward pass
# Bounds on what one command draws, so that a typo is an error, not a machine
# thrashing: every sample is held in memory before it is written.
MAX_VALUES = 100_000_000        # images: n x one image's values (400 MB as float32)
MAX_TEXTS, MAX_LENGTH = 10_000, 100_000
MAX_BEAM = 1_000
MAX_GRID = 1_024           # images in one .png grid


def check_generates(trained: Trained) -> str:
    """The model's task, where `generate` samples it; a UserError otherwise."""
    if trained.task not in GENERATES:
        raise UserError(f"SOURCE: the model's task is {trained.task}; generate samples a "
                        "language model (char_lm) or a generator (gan, vae); hypersweep "
                        "predict runs the others on new samples")
    return trained.task


def default_prompt(vocabulary: list[str]) -> str:
    """Where a text starts when no prompt is given: a new line, else a space."""
    for start in ("\n", " "):
        if start in vocabulary:
            return start
    raise UserError("--prompt: needed: the model's vocabulary has no new line or space to "
                    "start from")


def generate_text(trained: Trained, n: int = 1, prompt: str | None = None, length: int = 200,
                  temperature: float = 1.0, beam: int = 0, seed: int = 0) -> list[str]:
    """`n` texts, each `prompt` and the `length` characters the model continues it
    with: sampled at `temperature` (below 1 surer, above 1 more varied), or the
    most probable continuation beam search of width `beam` finds (one text)."""
    import torch

    vocab = trained.vocabulary
    prompt = default_prompt(vocab) if prompt is None else prompt
    _check_counts(n=n, length=length)
    _check_at_most(n=(n, MAX_TEXTS), length=(length, MAX_LENGTH), beam=(beam, MAX_BEAM))
    if not prompt:
        raise UserError("--prompt: empty; give at least one character the model knows")
    if not temperature > 0 or not math.isfinite(temperature):
        raise UserError(f"--temperature: must be a finite number above 0, got {temperature}")
    if beam < 0:
        raise UserError(f"--beam: must be at least 1 (or 0, the default: sample), got {beam}")
    if beam and n != 1:
        raise UserError(f"--beam: gives one text, the most probable; -n {n} asks for more "
                        "(sample them at a --temperature instead)")
    if beam and temperature != 1.0:
        raise UserError("--temperature: applies to sampling; --beam finds the most probable "
                        "text, which no temperature changes")
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted({c for c in prompt if c not in index})
    if unknown:
        raise UserError(f"--prompt: {', '.join(map(repr, unknown[:5]))} not in the model's "
                        f"vocabulary of {len(vocab)} characters: {''.join(vocab)!r}")
    ids = torch.tensor([[index[c] for c in prompt]] * n, dtype=torch.long)
    with trained.running("to generate text"):
        if beam:
            out = trained.model.beam_search(ids, length, width=beam)
        else:
            out = trained.model.sample(ids, length, temperature,
                                       generator=torch.Generator().manual_seed(seed))
    return [trained.tokens_text(row) for row in out.tolist()]


def generate_images(trained: Trained, n: int = 64, seed: int = 0) -> np.ndarray:
    """`n` samples (n, *the data's sample shape), values in [0, 1]."""
    import torch

    _check_counts(n=n)
    shape = tuple(trained.data["input_shape"])
    most = max(1, MAX_VALUES // math.prod(shape))
    if n > most:
        raise UserError(f"-n: at most {most:,} samples of {shape} ({MAX_VALUES:,} values, "
                        f"held in memory before they are written), got {n:,}")
    generator = torch.Generator().manual_seed(seed)
    samples = np.empty((n, *shape), dtype=np.float32)
    with trained.running("to sample"):
        for i in range(0, n, CHUNK):
            part = trained.model.sample(min(CHUNK, n - i), generator=generator).float()
            samples[i:i + len(part)] = part.clamp(0, 1).reshape(len(part), *shape).numpy()
    return samples


def write_images(samples: np.ndarray, path: Path, title: str) -> None:
    """`path`.png: the samples as a grid of images; `path`.npz: the array `x`."""
    import torch

    from hypersweep.models.generative import image_grid
    if path.suffix.lower() == ".npz":
        _write(path, lambda f: np.savez_compressed(f, x=samples.astype(np.float32)))
        return
    check_grid(len(samples), path)
    rows = max(1, math.ceil(len(samples) / math.ceil(math.sqrt(len(samples)))))
    png = image_grid(torch.as_tensor(samples), rows=rows, title=title)
    if png is None:
        raise UserError(f"--output: {path.name}: the samples are vectors of "
                        f"{samples.shape[1:]}, not images; write FILE.npz")
    _write(path, lambda f: f.write(png))


def check_grid(n: int, path: Path) -> None:
    """A .png grid of at most MAX_GRID images (checked before any is drawn)."""
    if path.suffix.lower() == ".png" and n > MAX_GRID:
        raise UserError(f"-n: a grid of {n:,} images is too large to read; at most "
                        f"{MAX_GRID:,} in FILE.png, or write FILE.npz")


def joined(texts: list[str]) -> str:
    """Texts as `generate` prints and writes them: a line `---` between two."""
    return "\n---\n".join(texts) + "\n"


def write_texts(texts: list[str], path: Path) -> None:
    _write(path, lambda f: f.write(joined(texts).encode("utf-8")))


def _write(path: Path, write) -> None:
    """Write `path` whole or not at all: into a new file beside it, which then
    replaces it. A failure leaves a file that was there as it was."""
    if path.is_dir():
        raise UserError(f"--output: {path} is a directory; give a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):      # never made, on a read-only file system
            tmp.unlink(missing_ok=True)
        raise UserError(f"--output: cannot write {path}: {e.strerror or e}") from None


def _check_at_most(**bounds: tuple[int, int]) -> None:
    for name, (value, most) in bounds.items():
        if value > most:
            flag = "-n" if name == "n" else f"--{name}"
            raise UserError(f"{flag}: at most {most:,}, got {value:,}")


def _check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            flag = "-n" if name == "n" else f"--{name}"
            raise UserError(f"{flag}: must be at least 1, got {value}")
