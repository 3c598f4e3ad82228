"""Imports every trainable family module so that it registers its trainer (``registry.register_trainer``).

Add one import line per family module.
"""
from . import diffusion_trainer  # noqa: F401
from . import label_vae_trainer  # noqa: F401
from . import spade_trainer  # noqa: F401
from . import anomaly_trainer  # noqa: F401
from . import latent_trainers  # noqa: F401
from . import feature_trainer  # noqa: F401
from . import temporal_trainer  # noqa: F401
