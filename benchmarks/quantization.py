"""Print the resource trade-off table (fp32 / bf16 / int8) of a model on this CPU, in one run.

    python benchmarks/quantization.py [--model spade_phantom] [--samples 8] [--repeats 5]
                                      [--dice-steps 300] [--threads 1] [--csv OUT.csv --plot OUT.png]

For a spade phantom model the downstream Dice comes from a small MONAI UNet trained here on real
phantom slices (``--dice-steps``, 0 to skip) and applied to each precision's synthetic images.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="spade_phantom")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dice-steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", type=Path)
    p.add_argument("--plot", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from napari_medgen.models.features import scale_unit
    from napari_medgen.models.store import load_card
    from napari_medgen.progress import run_to_completion
    from napari_medgen.tasks.quantize import format_table, quantize
    from napari_medgen.models.store import resolve_model
    from napari_medgen.tasks.usefulness import phantom_slices, segment, train_unet

    model = resolve_model(args.model)
    card = load_card(model)
    segmenter = None
    if args.dice_steps and card["family"] == "spade" and int(card["network"]["n_classes"]) == 8:
        size = int(card["shape"][-1])
        real = phantom_slices(range(48), "mr_vendor_a", size)
        net = run_to_completion(train_unet(real, 8, args.dice_steps, seed=0))
        segmenter = lambda images: segment(net, scale_unit(images))  # noqa: E731
    result = run_to_completion(quantize(model, n_samples=args.samples, repeats=args.repeats, segmenter=segmenter,
                                        csv_path=args.csv, plot_path=args.plot))
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else "?"
    print(f"model {model}  torch {torch.__version__}  CPU {cpu}  threads {args.threads}")
    print(format_table(result))
    if segmenter is not None:
        print(f"dice: UNet trained {args.dice_steps} steps on 48 real phantom slices, scored on each precision's "
              "images against the label maps they were synthesised from")
    return 0


if __name__ == "__main__":
    sys.exit(main())
