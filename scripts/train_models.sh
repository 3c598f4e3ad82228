#!/usr/bin/env bash
# The exact commands that trained every shipped model (run from the repository root).
set -euo pipefail
medgen train vae --sample phantom --steps 2500 --batch-size 32 --lr 1e-3 --seed 0 --set n_subjects=3000 --set anatomy_seed=0 --set bias=0.05 --set latent_dim=8 --checkpoint-every 250 --no-resume --workdir medgen-runs/vae_phantom --out src/napari_medgen/sample_data/models/vae_phantom
medgen train gan --sample phantom --steps 2000 --batch-size 32 --seed 0 --set n_subjects=3000 --checkpoint-every 250 --workdir medgen-runs/gan_phantom --out src/napari_medgen/sample_data/models/gan_phantom
medgen --device cpu train anomaly_ae --sample phantom --steps 600 --batch-size 8 --lr 1e-3 --seed 0 --out src/napari_medgen/sample_data/models/anomaly_ae --workdir /tmp/evalruns/anomaly_ae
OMP_NUM_THREADS=1 medgen --device cpu train spade --sample phantom --steps 700 --batch-size 8 --lr 5e-4 --seed 0 --checkpoint-every 50 --no-resume --set subjects=24 --out src/napari_medgen/sample_data/models/spade_phantom --workdir medgen-runs/spade_phantom
medgen --device cpu train feature_encoder --sample phantom --steps 400 --batch-size 16 --lr 1e-3 --seed 0 --out src/napari_medgen/sample_data/models/feature_encoder --workdir /tmp/evalruns/feature_encoder
OMP_NUM_THREADS=1 medgen --device cpu --quiet train label_vae --sample phantom --steps 2000 --batch-size 8 --lr 0.002 --seed 0 --out src/napari_medgen/sample_data/models/label_vae_phantom --workdir /tmp/live_runs/label_vae_phantom_v3 --no-resume --set subjects=24 --set heldout_subjects=4
OMP_NUM_THREADS=1 medgen --device cpu --quiet train diffusion --sample phantom --steps 700 --batch-size 6 --lr 5e-4 --seed 0 --set dims=2 --set size=48 --set channels=16,32,64 --set groups=16 --set conditioned=1 --set spade_channels=16 --set ema=0.99 --out src/napari_medgen/sample_data/models/diffusion_phantom2d_mask --workdir /tmp/medgen-runs/diffusion_phantom2d_mask
