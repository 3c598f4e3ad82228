"""napari-medgen: generative models for medical imaging, in napari and on the command line.

The core (``io``, ``data``, ``models``, ``training``, ``tasks``) never imports napari or Qt.
"""

__version__ = "0.1.0"
