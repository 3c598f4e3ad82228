#!/usr/bin/env bash
# The exact commands that trained every shipped model (run from the repository root). --device auto: the same
# script runs on a GPU where there is one (the shipped models were trained on CPU; each card records the device).
set -euo pipefail
# vae_phantom: three stages in one work folder (8,000 steps at beta 2e-3, then 1,500 more at beta 1e-2, which pulls unused latent
# coordinates back to the prior); the shipped run used workdir /tmp/exp10/runB (copied to runD for the last stage) and --out vaeB / vaeB8 / vaeD,
# and vaeD was copied here (card: training.command is the last stage's)
medgen --quiet train vae --sample phantom --steps 4000 --batch-size 32 --lr 1e-3 --seed 0 --set n_subjects=3000 --set anatomy_seed=0 --set bias=0.05 --set decoder=parts --set class_balanced=true --set seg_weight=1 --set kl_warmup=1000 --checkpoint-every 500 --workdir medgen-runs/vae_phantom --set beta=2e-3 --no-resume --out medgen-runs/vae_phantom_4000
medgen --quiet train vae --sample phantom --steps 8000 --batch-size 32 --lr 1e-3 --seed 0 --set n_subjects=3000 --set anatomy_seed=0 --set bias=0.05 --set decoder=parts --set class_balanced=true --set seg_weight=1 --set kl_warmup=1000 --checkpoint-every 500 --workdir medgen-runs/vae_phantom --set beta=2e-3 --out medgen-runs/vae_phantom_8000
medgen --quiet train vae --sample phantom --steps 9500 --batch-size 32 --lr 1e-3 --seed 0 --set n_subjects=3000 --set anatomy_seed=0 --set bias=0.05 --set decoder=parts --set class_balanced=true --set seg_weight=1 --set kl_warmup=1000 --checkpoint-every 500 --workdir medgen-runs/vae_phantom --set beta=1e-2 --out src/napari_medgen/sample_data/models/vae_phantom
medgen --quiet directions discover --model src/napari_medgen/sample_data/models/vae_phantom --method axes --k 8
medgen --quiet directions measure --model src/napari_medgen/sample_data/models/vae_phantom --bases 12 --record
medgen --quiet directions quality --model src/napari_medgen/sample_data/models/vae_phantom --record
# vae_brain: 1 mm MNI152 template (nilearn wheel), held-out axial slabs (data.brain.axial_split) never trained on, nor (validation=true)
# its validation slabs, each slice prepared as "invert current slice" prepares a scan's (data.brain_slices), a bank of 2000 with random
# deformations; 2000 steps on 2 shared CPU cores (1 torch thread), 4 min. The latent width was chosen on the validation slabs only:
# the line below with latent_dim 16/64/128/256 (--out /tmp/vae_runs/lW), then python scripts/vae_brain_validation.py /tmp/vae_runs/l16 ...
# (model grid 0.703/0.771/0.811/0.864); the shipped run wrote to /tmp/vae_runs/l256 and was copied (card: training.command, notes)
OMP_NUM_THREADS=1 medgen --device auto --quiet train vae --sample brain --steps 2000 --batch-size 16 --lr 1e-3 --seed 0 --set latent_dim=256 --set beta=0.001 --set seg_weight=1 --set class_balanced=true --set kl_warmup=500 --set n_subjects=2000 --set validation=true --checkpoint-every 500 --no-resume --workdir medgen-runs/vae_brain --out src/napari_medgen/sample_data/models/vae_brain
medgen --quiet directions discover --model src/napari_medgen/sample_data/models/vae_brain --method pca --k 6 --overwrite
medgen --quiet directions quality --model src/napari_medgen/sample_data/models/vae_brain --record
python benchmarks/quality.py --only vae_brain --record   # the ledger (test slabs, once, after the choice): ship only if the inversion correlation in brain >= 0.8
medgen train gan --sample phantom --steps 1500 --batch-size 16 --seed 0 --set n_subjects=3000 --set anatomy_seed=0 --set bias=0.05 --set latent_dim=8 --checkpoint-every 250 --no-resume --workdir medgen-runs/gan_phantom --out src/napari_medgen/sample_data/models/gan_phantom
medgen --device auto train anomaly_ae --sample phantom --steps 600 --batch-size 8 --lr 1e-3 --seed 0 --out src/napari_medgen/sample_data/models/anomaly_ae --workdir /tmp/evalruns/anomaly_ae
# spade_phantom: acquisition-noise model (Rician, measured on the training background), class-balanced L1, lookup-table start,
# zero-mean texture (each label's mean is the style's linear offset, refitted on the training slices at export; air flat),
# intensities normalised at the 99.99th percentile (99.5 clipped the brightest labels); 4000 steps on 2 shared CPU threads,
# about 36 min; the shipped run wrote to /tmp/runs and was re-exported from its step-4000 checkpoint (card: training.notes)
OMP_NUM_THREADS=2 medgen --device auto --quiet train spade --sample phantom --steps 4000 --batch-size 4 --lr 3e-4 --seed 0 --checkpoint-every 250 --set subjects=96 --set lut_init=true --set noise=rician --set class_balanced=true --set 'channels=[32,64,128]' --set head_channels=16 --set w_l1=20 --set zero_mean_texture=true --set norm_high=99.99 --no-resume --out src/napari_medgen/sample_data/models/spade_phantom --workdir medgen-runs/spade_phantom_v5
python benchmarks/quality.py --only spade_phantom --record
# spade_brain: 1 mm MNI152 template (nilearn wheel), held-out axial slabs (data.brain.axial_split), augmentation, lookup-table start;
# 2500 steps on 2 shared CPU cores (2 torch threads), 37 min; the shipped run (planned for 3000) stopped at its step-2500 checkpoint and was copied (card: training.notes)
STEPS_BRAIN="${STEPS_BRAIN:-2500}"
OMP_NUM_THREADS=2 medgen --device auto --quiet train spade --sample brain --steps "$STEPS_BRAIN" --batch-size 4 --lr 3e-4 --seed 0 --checkpoint-every 100 --set resolution=1 --set augment=true --set lut_init=true --set 'input_shape=[192,160]' --set 'channels=[32,64,128,128]' --set spade_hidden=32 --set head_channels=16 --set w_l1=20 --out src/napari_medgen/sample_data/models/spade_brain --workdir medgen-runs/spade_brain_1mm
python benchmarks/quality.py --only spade_brain --record   # the ledger: ship only if SSIM in brain >= lookup table (blurred) + 0.05
medgen --device auto train feature_encoder --sample phantom --set also_brain=true --steps 400 --batch-size 16 --lr 1e-3 --seed 0 --no-resume --out src/napari_medgen/sample_data/models/feature_encoder --workdir /tmp/evalruns/feature_encoder_brain
OMP_NUM_THREADS=1 medgen --device auto --quiet train label_vae --sample phantom --steps 2000 --batch-size 8 --lr 0.002 --seed 0 --out src/napari_medgen/sample_data/models/label_vae_phantom --workdir /tmp/live_runs/label_vae_phantom_v3 --no-resume --set subjects=24 --set heldout_subjects=4
OMP_NUM_THREADS=1 medgen --device auto --quiet train diffusion --sample phantom --steps 700 --batch-size 6 --lr 5e-4 --seed 0 --set dims=2 --set size=48 --set channels=16,32,64 --set groups=16 --set conditioned=1 --set spade_channels=16 --set ema=0.99 --set prediction=sample --out src/napari_medgen/sample_data/models/diffusion_phantom2d_mask --workdir /tmp/medgen-runs/diffusion_phantom2d_mask_x0
OMP_NUM_THREADS=1 medgen --device auto --quiet train diffusion --sample phantom --steps 700 --batch-size 8 --lr 5e-4 --seed 0 --set dims=2 --set size=64 --set channels=16,32,64 --set groups=16 --set ema=0.99 --set prediction=sample --checkpoint-every 100 --no-resume --out src/napari_medgen/sample_data/models/diffusion_phantom2d --workdir medgen-runs/diffusion_phantom2d  # shipped run wrote to /tmp/runs/diffusion_phantom2d and was copied (card: training.command)
# diffusion_phantom3d is not shipped: it loses its ledger (bar: every structure in 95 % of samples). The best recipe so far, for anyone with
# more compute (docs/sample.md, "A finer grid and min-SNR weighting"): the 48^3 grid, 400 phantoms, x0 prediction, 2000 steps (43 min on
# 2 CPU threads), then 2000 more with min-SNR-5 loss weighting from its weights (50 min): in 10 samples (seed 1) LV blood and RV 0.8,
# spine 1.0, myocardium and tumour 0.0 (resumed towards 4000 at this constant rate it broke down near step 2750). Stage 1 ran with --steps 5000 and was stopped and re-exported at its step-2000 checkpoint
# (the learning rate is constant: the same weights). Measure a candidate with
# python benchmarks/quality.py --only diffusion_phantom3d --model diffusion_phantom3d=medgen-runs/diffusion_phantom3d
OMP_NUM_THREADS=2 medgen --device auto --quiet train diffusion --sample phantom --steps 2000 --batch-size 2 --lr 5e-4 --seed 0 --set dims=3 --set size=48 --set channels=16,32,64 --set groups=8 --set n_subjects=400 --set prediction=sample --set sampler=ddim --set ema=0.999 --checkpoint-every 500 --no-resume --workdir medgen-runs/diffusion_phantom3d_stage1 --out medgen-runs/diffusion_phantom3d_stage1_model
OMP_NUM_THREADS=2 medgen --device auto --quiet train diffusion --sample phantom --steps 2000 --batch-size 2 --lr 5e-4 --seed 1 --set dims=3 --set size=48 --set channels=16,32,64 --set groups=8 --set n_subjects=400 --set prediction=sample --set sampler=ddim --set ema=0.999 --set min_snr_gamma=5 --set init=medgen-runs/diffusion_phantom3d_stage1_model --checkpoint-every 250 --no-resume --workdir medgen-runs/diffusion_phantom3d --out medgen-runs/diffusion_phantom3d
# diffusion_brain2d, three stages: noise prediction, 3000 steps at lr 3e-4 (81 min on 1 shared CPU thread; that run had no --set
# sampler yet, the key was added to its card), then 3000 more at lr 1e-4 from its weights (seed 1, about 47 min on 2 CPU threads),
# then 3000 more at lr 5e-5 (seed 2, 49 min on 2 CPU threads). The shipped runs initialised the second stage from the then-shipped
# first stage (init=diffusion_brain2d) and the third from a copy of the then-shipped second stage in medgen-runs/; they wrote to
# /tmp/runs/db2d_ft and /tmp/runs/db2d_ft3_model and were copied (cards: training.notes)
OMP_NUM_THREADS=1 medgen --device auto --quiet train diffusion --sample brain --steps 3000 --batch-size 8 --lr 3e-4 --seed 0 --set dims=2 --set size=80 --set channels=32,64,64 --set groups=16 --set ema=0.999 --set prediction=epsilon --set sampler=ddpm --checkpoint-every 250 --no-resume --workdir medgen-runs/diffusion_brain2d_stage1 --out medgen-runs/diffusion_brain2d_stage1_model
OMP_NUM_THREADS=2 medgen --device auto --quiet train diffusion --sample brain --steps 3000 --batch-size 8 --lr 1e-4 --seed 1 --set dims=2 --set size=80 --set channels=32,64,64 --set groups=16 --set ema=0.999 --set prediction=epsilon --set sampler=ddpm --set init=medgen-runs/diffusion_brain2d_stage1_model --checkpoint-every 250 --no-resume --workdir medgen-runs/diffusion_brain2d_stage2 --out medgen-runs/diffusion_brain2d_stage2_model
OMP_NUM_THREADS=2 medgen --device auto --quiet train diffusion --sample brain --steps 3000 --batch-size 8 --lr 5e-5 --seed 2 --set dims=2 --set size=80 --set channels=32,64,64 --set groups=16 --set ema=0.999 --set prediction=epsilon --set sampler=ddpm --set init=medgen-runs/diffusion_brain2d_stage2_model --checkpoint-every 250 --no-resume --workdir medgen-runs/diffusion_brain2d --out src/napari_medgen/sample_data/models/diffusion_brain2d
python benchmarks/quality.py --only diffusion_brain2d --record
OMP_NUM_THREADS=1 medgen --device auto --quiet train temporal --sample phantom --steps 600 --batch-size 4 --lr 2e-3 --seed 0 --set n_subjects=100 --set adv_weight=0.02 --set adv_start=0.5 --checkpoint-every 100 --no-resume --workdir medgen-runs/temporal_phantom --out src/napari_medgen/sample_data/models/temporal_phantom  # shipped run wrote to /tmp/runs/temporal_phantom and was copied (card: training.command)
OMP_NUM_THREADS=1 medgen --device auto --quiet train temporal --sample phantom --set series=breathing --steps 1500 --batch-size 4 --lr 2e-3 --seed 0 --set n_subjects=100 --set adv_weight=0.02 --set adv_start=0.5 --checkpoint-every 100 --no-resume --workdir medgen-runs/temporal_breathing --out src/napari_medgen/sample_data/models/temporal_breathing
