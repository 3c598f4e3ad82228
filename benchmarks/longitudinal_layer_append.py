"""How long adding each of the Longitudinal result's layers holds the Qt thread, three ways, alternated.

One shown viewer with the heartbeat benchmark's phantom CT (512 x 512 x 100) and its labels; the dock's
result (5 follow-ups, prepared as the worker prepares it) is shown layer by layer: the series' first
frame (3D), the 4D labels (the viewer's first 4D layer: napari rebuilds its dims sliders), the
difference map and the follow-up at t. Each round adds them in each way, then removes them; the
median over the rounds after the first (warm) is printed per layer, in ms of ``viewer`` calls only
(not the redraw that follows):

- ``qt``: :func:`napari_medgen.widgets.common.add_layer_data` (the napari layer constructed on the Qt
  thread and made the active layer, as napari does for every new layer);
- ``built``: the layer built beforehand (as the worker does), appended and made active;
- ``built, not active``: what the dock does now (``followup_layers._show``): built beforehand,
  appended without becoming the active layer.

Alternating the ways within one process exposes them to the same machine load.

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/longitudinal_layer_append.py \
        [--rounds 7] [--tumour-mm 6]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="rounds (the first, cold, is not counted)")
    ap.add_argument("--tumour-mm", type=float, default=6.0, help="as in longitudinal_heartbeat.py")
    args = ap.parse_args()
    import napari

    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.data.progression import Progression, schedule
    from napari_medgen.tasks.followup import simulate_followups
    from napari_medgen.widgets import followup_layers as fl
    from napari_medgen.widgets.common import add_layer_data, add_volume, append_layer

    image, labels = make_phantom(3_000_900, shape=(100, 512, 512), spacing=(0.75, 0.75, 2.5), style="ct",
                                 tumour_radius_mm=args.tumour_mm)
    viewer = napari.Viewer(show=True)
    app = napari.qt.get_qapp()
    window = (-1000.0, 400.0)
    add_volume(viewer, image, "ct", contrast_limits=window)
    add_volume(viewer, labels, "ct labels")
    task = fl.prepared(simulate_followups(image, labels, 7, schedule(5, 3.0), Progression()), window)
    while True:
        try:
            next(task)
        except StopIteration as stop:
            prepared = stop.value
            break
    specs = fl._new_layers(prepared, window)
    names = [fl.OUTPUT, fl.LABELS, fl.DIFFERENCE, fl.AT_T]

    def settle() -> None:
        for _ in range(5):
            app.processEvents()
            time.sleep(0.01)

    def qt(name: str) -> Callable[[], object]:
        layer, display = specs[name]
        return lambda: add_layer_data(viewer, layer, **display)

    def built(name: str) -> Callable[[], object]:
        layer, display = specs[name]
        new = fl.build_layer(layer, **display)
        return lambda: append_layer(viewer, new)

    def built_not_active(name: str) -> Callable[[], object]:
        layer, display = specs[name]
        prepared.new[name] = fl.build_layer(layer, **display)
        return lambda: fl._show(viewer, prepared, name, layer, display, [])

    ways = {"qt": qt, "built": built, "built, not active": built_not_active}
    ms: dict[tuple[str, str], list[float]] = {(way, name): [] for way in ways for name in names}
    for round_ in range(args.rounds):
        for way, make in ways.items():
            for name in names:
                add = make(name)  # building (where the way builds first) is the worker's part: not timed
                gc.disable()
                start = time.perf_counter()
                add()
                elapsed = 1000 * (time.perf_counter() - start)
                gc.enable()
                if round_:
                    ms[(way, name)].append(elapsed)
                settle()
            for layer in [layer for layer in viewer.layers if layer.name.startswith(fl.OUTPUT)]:
                viewer.layers.remove(layer)
            gc.collect()
            settle()
    print(f"{'ms (median of ' + str(args.rounds - 1) + ' warm rounds)':<32}" + "".join(f"{n:>22}" for n in names))
    for way in ways:
        print(f"{way:<32}" + "".join(f"{statistics.median(ms[(way, n)]):22.1f}" for n in names))
    print("load average: " + open("/proc/loadavg", encoding="utf-8").read().strip())
    viewer.close()


if __name__ == "__main__":
    main()
