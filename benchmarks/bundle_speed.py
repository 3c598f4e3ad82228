"""Bundle sampling speed: the project's sampling path against MONAI's own inferer, same network, one run.

For each model-zoo bundle (its published config files, tests/fixtures/bundles, with random weights
at the published network widths) both paths sample from the same start noise with DDIM for
``--steps`` steps and decode; the time of one denoising step, the median of three
(T(steps) - T(2)) / (steps - 2) (set-up, decoding and previews cancel; process CPU time on the CPU,
so that other jobs on the machine do not count; wall time on CUDA), and the ratio project / MONAI
are printed:

* MONAI: ``DiffusionInferer.sample`` (mednist_ddpm, the inferer its config names, and the brats
  latent bundles, whose ``LatentDiffusionInferer`` runs it on the latent), and for bundles whose zoo
  sampler is a script (brain LDM: concatenated + cross-attention conditioning; MAISI: ControlNet +
  region and spacing inputs) the same eager loop over MONAI's networks and scheduler that the
  script runs; the latent is not decoded (the same autoencoder call in both paths, left out of both);
* project: ``tasks.sample.sample`` (inference mode, fused attention, channels-last in 2D,
  float16 autocast on CUDA / bfloat16 on CPUs with native bf16, tracing for long CPU runs), with
  its previews (first step and last) and memory guard included.

    OMP_NUM_THREADS=1 python benchmarks/bundle_speed.py [--steps 5] [--bundles mednist_ddpm ...] [--device auto]

The output image shapes are the published ones for the 2D bundles and smaller for the 3D ones
(``--shape3d``, default 32: latents of 8 voxels a side for brats, 4 for the brain LDM; MAISI 64:
latents of 16),
so that a CPU can run it; the networks are the published ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import DiffusionInferer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.models.test_bundle import AXIAL, BRAIN, BRATS, MAISI, MEDNIST, publish  # noqa: E402

from napari_medgen.device import inference_autocast, resolve_device  # noqa: E402
from napari_medgen.models.bundle import load_bundle  # noqa: E402
from napari_medgen.models.diffusion import make_scheduler  # noqa: E402
from napari_medgen.progress import run_to_completion  # noqa: E402
from napari_medgen.tasks.sample import sample  # noqa: E402

BUNDLES = (MEDNIST, AXIAL, BRATS, BRAIN, MAISI)
REPEATS = 3


def monai_sample(name: str, m, noise: torch.Tensor, steps: int, cond: torch.Tensor | None,
                 seg: torch.Tensor | None) -> torch.Tensor:
    """MONAI's own sampling of bundle ``name`` up to the (latent) sample, not decoded (eager, no_grad, as its
    inferer or zoo script runs it; LatentDiffusionInferer runs DiffusionInferer.sample on the latent)."""
    sched = make_scheduler(m.scheduler, "ddim", steps)
    with torch.no_grad():
        if name in (MEDNIST, BRATS, AXIAL):
            return DiffusionInferer(sched).sample(noise, m.unet, sched, verbose=False)
        x = noise
        for t in sched.timesteps:
            ts = torch.full((len(x),), t, device=x.device).long()
            if name == BRAIN:  # the zoo's scripts/sampler.py
                extra = cond[:, 0, :, None, None, None].expand(-1, -1, *x.shape[2:])
                out = m.unet(torch.cat((x, extra), 1), timesteps=ts, context=cond)
            else:  # MAISI, scripts/sample.py ldm_conditional_sample_one_image
                down, mid = m.controlnet(x=x, timesteps=ts.float(), controlnet_cond=seg)
                out = m.unet(x=x, timesteps=ts.float(), down_block_additional_residuals=down,
                             mid_block_additional_residual=mid, **m.region_tensors)
            x, _ = sched.step(out, t, x)
        return x


def bench(name: str, root: Path, steps: int, side3d: int, device: torch.device) -> tuple[float, float, str]:
    folder = publish(name, root, overrides={}, masks=False)  # MAISI's mask-generation networks are not timed
    m = load_bundle(folder, device)
    shape = {MEDNIST: None, AXIAL: None}.get(name, (side3d,) * 3)
    mask = cond = seg = None
    kwargs: dict = {}
    if name == BRAIN:
        kwargs["condition"] = "age=0.5"
        cond = torch.tensor([[[0.0, 0.5, 0.2, 0.4]]], device=device)
    if name == MAISI:
        from napari_medgen.io.volume import Volume

        lab = np.zeros((side3d,) * 3, np.int16)
        lab[4:-4, 4:-4, 4:-4] = 1
        mask = Volume(lab, is_label=True)
        kwargs["label_map"] = ["identity"]  # the label values are MAISI's (1: liver)
    if shape is not None:
        m.shape = m.network_shape(shape[::-1])  # the sample's (x, y, z); MONAI's path runs first, on stock modules
    if name == MAISI:
        from napari_medgen.tasks.sample_inputs import label_grid

        labels, _ = label_grid(mask, m.spacing, m.image_shape)
        seg = m.set_inputs(labels, m.spacing, 2, 2).to(device)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn((1, m.in_channels, *m.shape), generator=gen).to(device)
    # decoding is left out of both paths (the same MONAI autoencoder call in each, and slower than several
    # steps): without its autoencoder the project samples the latent itself, MAISI at the same grid
    if name != MAISI and m.autoencoder is not None:
        shape = tuple(reversed(m.shape))
    m.autoencoder = None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    clock = time.perf_counter if device.type == "cuda" else time.process_time  # CPU time: other jobs' load cancels

    def timed(run) -> float:
        sync()
        start = clock()
        run()
        sync()
        return clock() - start

    def per_step(run) -> float:
        """Median over REPEATS of (T(steps) - T(2)) / (steps - 2): the denoising step alone (set-up, decoding
        and the project's first-step and final previews cancel)."""
        run(2)  # warm-up
        return statistics.median((timed(lambda: run(steps)) - timed(lambda: run(2))) / (steps - 2)
                                 for _ in range(REPEATS))

    baseline = per_step(lambda s: monai_sample(name, m, noise, s, cond, seg))
    ours = per_step(lambda s: run_to_completion(sample(m, sampler="ddim", steps=s, shape=shape, mask=mask,
                                                       device=device, preview_every=10**6, **kwargs)))
    latent = "x".join(map(str, m.shape))
    return baseline, ours, latent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--shape3d", type=int, help="output side of the 3D bundles (default: 32, MAISI 64)")
    ap.add_argument("--bundles", nargs="+", default=list(BUNDLES), choices=BUNDLES)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    auto = type(inference_autocast(device)).__name__
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"threads {torch.get_num_threads()}, project autocast: {auto}, DDIM {args.steps} steps, random weights")
    print(f"{'bundle':46s} {'network sample':>14s} {'MONAI s/step':>13s} {'project s/step':>15s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.bundles:
            side = args.shape3d or (64 if name == MAISI else 32)  # MAISI's decoder splits each axis in 8
            base, ours, latent = bench(name, Path(tmp), args.steps, side, device)
            print(f"{name:46s} {latent:>14s} {base:13.3f} {ours:15.3f} {ours / base:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
