"""3D diffusion training step: channels-last memory (what DiffusionTrainer uses for dims=3) against
PyTorch's default contiguous layout, and a patched network (``--set patch=2``: 2^3 voxel blocks folded
into channels, ``models.diffusion.PatchedUNet``, with one more level attended at the bottom) against
the plain one, in one run:

    OMP_NUM_THREADS=2 python benchmarks/diffusion3d_train_step.py [--size 48] [--channels 16,32,64]
        [--patched-channels 32,64,64,128] [--repeats 6]

One step = forward of a MONAI DiffusionModelUNet on a batch of 2 noised (size,)^3 volumes, MSE,
backward, AdamW. Each network starts from fixed weights and inputs; repeats alternate between
them so machine load hits all alike. Prints the median seconds per step of each and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from napari_medgen.models.diffusion import build_unet


def step_seconds(memory_format: torch.memory_format, size: int, channels: list[int], groups: int,
                 batch: int, patch: int = 1) -> Callable[[], float]:
    """A function running one training step in ``memory_format`` and returning its wall time (s); a
    patched network (patch > 1) attends at its bottom level with 32-channel heads, as the 3D recipe in
    scripts/train_models.sh does."""
    torch.manual_seed(0)
    attend = [False] * (len(channels) - 1) + [patch > 1]
    network = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": channels,
               "attention_levels": attend, "num_res_blocks": 1, "norm_num_groups": groups,
               "num_head_channels": 32 if patch > 1 else channels[-1], **({"patch": patch} if patch > 1 else {})}
    unet = build_unet(network)["unet"].to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, size, size, size).to(memory_format=memory_format)
    t = torch.rand(batch) * 1000

    def run() -> float:
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(unet(x, timesteps=t), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    run()  # warm-up (allocator, oneDNN primitives)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--channels", default="16,32,64")
    ap.add_argument("--patched-channels", default="32,64,64,128")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=6)
    a = ap.parse_args()
    channels = [int(c) for c in a.channels.split(",")]
    patched = [int(c) for c in a.patched_channels.split(",")]
    last = torch.channels_last_3d
    runs = {"contiguous": step_seconds(torch.contiguous_format, a.size, channels, a.groups, a.batch),
            "channels-last": step_seconds(last, a.size, channels, a.groups, a.batch),
            "patch 2": step_seconds(last, a.size, patched, a.groups, a.batch, patch=2)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(a.repeats):
        for name, run in runs.items():
            times[name].append(run())
    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"3D UNet {channels} (patch 2: {patched}, attention at the bottom), batch {a.batch} of {a.size}^3, "
          f"{torch.get_num_threads()} threads, median of {a.repeats} steps")
    for name, v in med.items():
        print(f"{name:>14}: {v:.3f} s/step")
    print(f"channels-last / contiguous: {med['channels-last'] / med['contiguous']:.2f}x the time "
          f"({med['contiguous'] / med['channels-last']:.2f}x faster)")
    print(f"patch 2 / channels-last: {med['patch 2'] / med['channels-last']:.2f}x the time "
          f"({med['channels-last'] / med['patch 2']:.2f}x faster)")


if __name__ == "__main__":
    main()
