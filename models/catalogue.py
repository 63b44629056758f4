"""Imports every architecture family so their builders register."""
from models import char_lm, cnn, linear, mlp, rnn, seq2seq  # noqa: F401
