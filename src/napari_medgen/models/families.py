"""Imports every model family module so that its builder is registered in the store.

Add one import line per family module.
"""
from . import features  # noqa: F401
from . import diffusion  # noqa: F401
from . import label_vae  # noqa: F401
from . import spade  # noqa: F401
from . import anomaly_ae  # noqa: F401
from . import latent  # noqa: F401
from . import temporal  # noqa: F401
