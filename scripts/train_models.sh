#!/usr/bin/env bash
# The exact commands that trained every shipped model (run from the repository root).
set -euo pipefail
medgen train vae --sample phantom --steps 4000 --batch-size 32 --lr 1e-3 --seed 0 --set n_subjects=3000 --checkpoint-every 250 --workdir medgen-runs/vae_phantom --out src/napari_medgen/sample_data/models/vae_phantom
medgen train gan --sample phantom --steps 3000 --batch-size 32 --seed 0 --set n_subjects=3000 --checkpoint-every 250 --workdir medgen-runs/gan_phantom --out src/napari_medgen/sample_data/models/gan_phantom
medgen --device cpu train anomaly_ae --sample phantom --steps 600 --batch-size 8 --lr 1e-3 --seed 0 --out src/napari_medgen/sample_data/models/anomaly_ae --workdir /tmp/evalruns/anomaly_ae
