"""The napari crash of issue 20: a Labels layer in paint mode, Live synthesis on, Live off, delete every
layer -> segfault in glDrawArrays (the brush-circle overlay's background box, drawn after the layers
went). The sequence runs in a child process, so a segfault fails this test instead of killing pytest."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import sys, time
    import torch
    torch.set_num_threads(1)
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication
    from napari_medgen.data.samples import brain_sample
    from napari_medgen.widgets.common import add_volume
    from napari_medgen.widgets.synthesize import SynthesizeWidget

    def pump(seconds):
        end = time.time() + seconds
        while time.time() < end:
            QApplication.processEvents()
            time.sleep(0.005)

    viewer = napari.Viewer(show=True)
    image, labels = brain_sample()
    add_volume(viewer, image, "brain")
    layer = add_volume(viewer, labels, "brain labels")
    add_volume(viewer, image, "brain 2")
    add_volume(viewer, labels, "brain labels 2")  # a second labels layer with data (napari/napari#8471)
    widget = SynthesizeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.labels_combo.setCurrentText("brain labels")
    widget.model_combo.setCurrentText("spade_brain")
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    pump(0.5)
    widget.live_box.setChecked(True)
    end = time.time() + 120
    while (widget.painting is None or widget.painting.updates < 1) and time.time() < end:
        pump(0.1)
    layer.paint((layer.data.shape[0] // 2, 30, 30), 2)
    pump(1.0)
    updates = widget.painting.updates if widget.painting is not None else 0
    widget.live_box.setChecked(False)
    pump(0.5)
    print("box", viewer.canvas.overlays._brush_circle.box, "updates", updates, flush=True)
    viewer.layers.select_all()
    viewer.layers.remove_selected()
    pump(3.0)
    print("survived", flush=True)
    viewer.close()
''')


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="needs a display (run under xvfb-run)")
def test_paint_live_on_off_then_delete_all_layers_does_not_crash():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=500, env=env)
    assert run.returncode == 0, f"exit {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    assert "box False" in run.stdout and "survived" in run.stdout
    assert "updates 0" not in run.stdout  # live mode really ran
