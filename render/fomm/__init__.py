"""FOMM (Siarohin et al., "First Order Motion Model for Image Animation", NeurIPS 2019) in Flax.

``load(checkpoint, config)`` reads an official ``.pth.tar`` (or a ``msync render convert``
directory) and returns a :class:`FommModel` with ``keypoints`` and ``render``. Every detail
that decides the numbers follows docs/fomm.md; parity with PyTorch is tested in
tests/test_fomm_parity.py.
"""
from render.fomm.config import FommConfig, load_config
from render.fomm.model import FommModel, load, normalize_kp

__all__ = ["FommConfig", "FommModel", "load", "load_config", "normalize_kp"]
