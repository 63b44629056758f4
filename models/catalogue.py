"""Imports every architecture family so their builders register."""
from models import linear, mlp  # noqa: F401
