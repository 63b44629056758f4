"""Imports every architecture family so their builders register."""
from hypersweep.models import (  # noqa: F401
    autoencoder, char_lm, cnn, gan, linear, mlp, rnn, seq2seq, vae,
)
