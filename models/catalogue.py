"""Imports every architecture family so their builders register."""
from models import autoencoder, gan, linear, mlp, vae  # noqa: F401
