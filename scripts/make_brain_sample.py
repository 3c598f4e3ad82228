"""Write the shipped brain sample (sample_data/brain/) from the MNI152 template in the nilearn wheel.

Usage: python scripts/make_brain_sample.py [OUT_DIR]   (default: src/napari_medgen/sample_data/brain)
"""

import sys
from pathlib import Path

import numpy as np

from napari_medgen.data.brain import derive_brain_sample
from napari_medgen.data.samples import BRAIN_IMAGE, BRAIN_LABELS
from napari_medgen.io.writers import write_volume

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "src/napari_medgen/sample_data/brain"
image, labels = derive_brain_sample()
for vol, name in ((image, BRAIN_IMAGE), (labels, BRAIN_LABELS)):
    path = write_volume(vol, out / name)
    print(f"{path}: shape {vol.data.shape} {vol.data.dtype}, {path.stat().st_size / 1024:.0f} KiB")
counts = np.bincount(labels.data.ravel(), minlength=4)
means = [float(image.data[labels.data == v].mean()) for v in (1, 2, 3)]
print(f"voxels per label {counts.tolist()}; T1 mean CSF/GM/WM {means[0]:.0f}/{means[1]:.0f}/{means[2]:.0f}")
