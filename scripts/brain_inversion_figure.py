"""Figure of "invert current slice" on held-out brain slices as they come from a scan (docs/directions.md).

    OMP_NUM_THREADS=1 python scripts/brain_inversion_figure.py [--out docs/images/directions_brain_inversion.png]

Three held-out slices of the 1 mm MNI152 template (MNI z -20, 10, 40 mm: inside the slabs of
``data.brain.axial_split``) with a synthetic skull and scalp, inverted by the shipped ``vae_brain``:
the slice as it comes, the automatic brain mask, the prepared slice (model grid), its inversion and
the result put back on the slice, with the in-brain correlations.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_medgen.data import brain  # noqa: E402
from napari_medgen.data.brain_slices import auto_brain_mask, with_synthetic_skull  # noqa: E402
from napari_medgen.models.store import SHIPPED_DIR  # noqa: E402
from napari_medgen.progress import run_to_completion  # noqa: E402
from napari_medgen.models.latent_handle import decode  # noqa: E402
from napari_medgen.tasks.latent_editor import LatentEditor  # noqa: E402

Z_MM = (-20.0, 10.0, 40.0)
PAD = 20  # pixels (1 mm) of room for the head around the brain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/images/directions_brain_inversion.png"))
    args = ap.parse_args()
    editor = LatentEditor(SHIPPED_DIR / "vae_brain")
    image, labels = brain.derive_brain_sample(resolution=1)
    z = brain.axial_z_mm(labels)
    spacing = (labels.spacing[1], labels.spacing[0])
    fig, axes = plt.subplots(len(Z_MM), 5, figsize=(12.5, 2.9 * len(Z_MM)))
    for row, zz in zip(axes, Z_MM):
        k = int(np.argmin(np.abs(z - zz)))
        truth = np.pad(labels.data[k] > 0, PAD)
        raw = with_synthetic_skull(np.pad(image.data[k].astype(np.float32), PAD), truth, spacing, seed=k)
        run_to_completion(editor.invert_image(raw, steps=150, spacing_mm=spacing))
        prep = editor.prepared
        decoded = decode(editor.model, editor.z[None])[0, 0]
        out = editor.render()[0]
        r_grid = np.corrcoef(decoded[prep.mask], prep.image[prep.mask])[0, 1]
        r_scan = np.corrcoef(out[truth], raw[truth])[0, 1]
        shown = [(raw, f"as it comes, z {zz:g} mm"), (auto_brain_mask(raw, spacing), "automatic brain mask"),
                 (prep.image, "prepared (3 mm grid)"), (decoded, f"inversion, r {r_grid:.2f}"),
                 (out, f"on the slice, r {r_scan:.2f}")]
        for ax, (im, title) in zip(row, shown):
            im = np.asarray(im, np.float32)
            ax.imshow(im, cmap="gray", vmin=float(np.percentile(im, 1)), vmax=float(np.percentile(im, 99.5)))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
