"""Does the 3D phantom model's clean-image prediction at high noise lean towards the class-weighted mean?

At the largest timesteps the noisy input says almost nothing about where a structure lies, so the x0 a network
learns there is a mean over the training volumes: the plain voxel mean under an unweighted loss, the mean
weighted by each voxel's class weight under ``--set class_balance=A`` (rare structures weigh more, so lung
voxels where a tumour or the heart sometimes lies are pulled towards their intensity). This prints the model's
mean x0 prediction (normalised intensities, [-1, 1]) beside both means, in lung voxels where a structure lies in
2-50 % of the training phantoms. Training phantoms only (seeds 0..n-1), nothing held out:

    python scripts/phantom3d_weight_bias.py [--model diffusion_phantom3d] [--n 100] [--alpha A]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_medgen.data.normalize import normalize
from napari_medgen.data.phantom import LABELS
from napari_medgen.models.diffusion import load_diffusion, make_scheduler
from napari_medgen.models.store import load_card, resolve_model
from napari_medgen.training.diffusion_trainer import sample_data
from napari_medgen.training.losses import class_frequency_weights

LUNG = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="diffusion_phantom3d")
    ap.add_argument("--n", type=int, default=100, help="training phantoms for the means (seeds 0..n-1)")
    ap.add_argument("--alpha", type=float, default=None,
                    help="class weights' exponent (default: the card's class_balance, else 0.25)")
    ap.add_argument("--draws", type=int, default=16, help="noisy inputs per timestep")
    a = ap.parse_args()
    path = resolve_model(a.model)
    model = load_diffusion(path)
    settings = load_card(path).get("training", {}).get("settings", {})
    alpha = a.alpha if a.alpha is not None else float(settings.get("class_balance", 0.25))
    edge = int(model.shape[0])
    images, labels, _ = sample_data("phantom", 3, edge, n_subjects=a.n)
    x0 = torch.from_numpy(normalize(np.stack(images).astype(np.float32), model.normalization).astype(np.float32))
    lab = torch.from_numpy(np.stack(labels))
    weights = class_frequency_weights(lab, len(LABELS), alpha, mean_over="voxels")
    w = weights[lab]
    plain, weighted = x0.mean(0), (w * x0).sum(0) / w.sum(0)
    p_lung = (lab == LUNG).float().mean(0)
    scheduler = make_scheduler(model.scheduler, "ddim", 50)  # only its add_noise (the training noise schedule)
    generator = torch.Generator().manual_seed(0)
    model.unet.eval()
    print(f"class weights (alpha {alpha}): " + ", ".join(f"{LABELS[k]} {float(weights[k]):.2f}" for k in LABELS))
    print("class means: " + ", ".join(f"{LABELS[k]} {float(x0[lab == k].mean()):+.3f}" for k in LABELS))
    for t in (999, 900, 700):
        preds = []
        with torch.inference_mode():
            for k in range(0, a.draws, 4):
                batch = x0[k:k + 4, None]
                steps = torch.full((len(batch),), t)
                noisy = scheduler.add_noise(batch, torch.randn(batch.shape, generator=generator), steps)
                preds.append(model.unet(noisy, timesteps=steps.float()).float()[:, 0])
        mean_pred = torch.cat(preds).mean(0)
        for k in (7, 4, 3, 5):  # tumour, myocardium, LV blood, RV
            p = (lab == k).float().mean(0)
            zone = (p > 0.02) & (p < 0.5) & (p_lung > 0.3)
            if not bool(zone.any()):
                continue
            print(f"t={t:4d}  lung voxels where the {LABELS[k]} lies in 2-50 % ({int(zone.sum())} voxels, "
                  f"{float(p[zone].mean()):.3f} on average): "
                  f"model {float(mean_pred[zone].mean()):+.3f}, plain mean {float(plain[zone].mean()):+.3f}, "
                  f"class-weighted mean {float(weighted[zone].mean()):+.3f}")


if __name__ == "__main__":
    main()
