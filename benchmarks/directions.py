"""Slider -> refreshed image latency of the latent-directions dock, against the bare decoder.

Run under a display (or Xvfb):
    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/directions.py [--model M] [--threads 2]

A real napari viewer shows a 128 x 128 image slice inverted into the model's latent space; each
measurement moves one slider (QSlider.setValue, as a drag does) and times until the dock has
decoded, resized to 128 x 128, and written the image and label layers (Qt thread, synchronous).
The bare decoder forward (model.decode of one latent) is timed in the same run. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch  # before Qt


def _model(arg: str | None, tmp: Path) -> tuple[Path, str]:
    from napari_medgen.models.latent import ImageLabelVAE
    from napari_medgen.models.store import SHIPPED_DIR, save_model

    if arg:
        return Path(arg), "given"
    shipped = SHIPPED_DIR / "vae_phantom.json"
    if shipped.exists():
        return shipped, "shipped vae_phantom"
    model = ImageLabelVAE(8)
    norm = {"kind": "percentile", "lo_value": 0.0, "hi_value": 1.0, "range": [0.0, 1.0]}
    save_model(tmp / "untrained", model, {"family": "vae", "network": model.config, "normalization": norm})
    return tmp / "untrained", "untrained vae of the shipped size (no shipped vae_phantom yet)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import napari
    import numpy as np

    from napari_medgen.progress import run_to_completion
    from napari_medgen.models.latent_handle import decode
    from napari_medgen.tasks.directions import discover
    from napari_medgen.widgets.directions import DirectionsWidget

    with tempfile.TemporaryDirectory() as tmp:
        path, origin = _model(args.model, Path(tmp))
        viewer = napari.Viewer(show=False)
        w = DirectionsWidget(viewer)
        w.model.addItem(path.stem, str(path))
        w.model.setCurrentIndex(w.model.count() - 1)
        w.editor.directions = run_to_completion(discover(w.editor.model, "sefa", 6))
        w._rebuild_rows()
        scan = np.random.default_rng(0).random((3, 128, 128)).astype(np.float32)
        viewer.add_image(scan, name="scan")
        run_to_completion(w.editor.invert_image(scan[1], steps=20))
        w._geometry = None
        w.update_output()

        z = w.editor.z[None]
        bare = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            decode(w.editor.model, z)
            bare.append(time.perf_counter() - t)
        slider = []
        for i in range(args.repeats):
            t = time.perf_counter()
            w.sliders[i % len(w.sliders)].setValue((i % 7 - 3) * 10 + (1 if i % 2 else -1))
            slider.append(time.perf_counter() - t)
        assert viewer.layers["latent edit"].data.shape[-2:] == (128, 128)
        viewer.close()

    med_bare, med_slider = statistics.median(bare) * 1e3, statistics.median(slider) * 1e3
    p90 = sorted(slider)[int(0.9 * (len(slider) - 1))] * 1e3
    print(f"model: {origin}; torch threads: {args.threads}; {args.repeats} repeats")
    print(f"{'measure':<44}{'median ms':>10}{'p90 ms':>10}")
    print(f"{'bare decoder forward (1 latent)':<44}{med_bare:>10.2f}{'':>10}")
    print(f"{'slider -> image + labels layers (128x128)':<44}{med_slider:>10.2f}{p90:>10.2f}")
    print(f"{'bar: slider median <= 100 ms':<44}{'PASS' if med_slider <= 100 else 'FAIL':>10}")
    print(f"{'ratio slider / bare forward':<44}{med_slider / med_bare:>10.1f}")


if __name__ == "__main__":
    main()
