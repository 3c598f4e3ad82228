"""LayerCombo: the docks' layer lists (kind and ``accept`` filter, the "none" entry's text and place, the default)."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from napari_medgen.widgets.combos import NONE, LayerCombo


def _items(combo: LayerCombo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_accept_filters_the_layers_and_none_can_be_named(make_napari_viewer):
    viewer = make_napari_viewer()
    combo = LayerCombo(viewer, Labels, none_first=True, accept=lambda layer: layer.ndim == 3, none="(auto)")
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="a")
    viewer.add_labels(np.zeros((4, 4), np.uint8), name="flat")
    viewer.add_image(np.zeros((2, 4, 4)), name="image")
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="b")
    assert _items(combo) == ["(auto)", "a", "b"] and combo.currentText() == "(auto)" and combo.layer() is None


def test_prefer_layer_defaults_to_the_first_layer_and_keeps_none_once_chosen(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="a")
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="b")
    combo, plain = (LayerCombo(viewer, Labels, none_first=True, prefer_layer=prefer) for prefer in (True, False))
    assert _items(combo) == [NONE, "a", "b"] and combo.currentText() == "a" and plain.currentText() == NONE
    changes: list[str] = []
    combo.currentTextChanged.connect(changes.append)
    combo.setCurrentText("b")
    viewer.layers.remove("b")  # a lost choice falls on the first layer, not on none
    assert combo.currentText() == "a" and changes == ["b", "a"]
    combo.setCurrentText(NONE)
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="c")  # none, once chosen, stays
    assert combo.currentText() == NONE and changes == ["b", "a", NONE]
    viewer.layers.remove("a")
    viewer.layers.remove("c")
    assert combo.currentText() == NONE and combo.layer() is None  # no layer left: none


def test_prefer_layer_leaves_none_when_the_first_layer_comes(make_napari_viewer):
    """A dock opened before any label map: its "none" was no choice of the user's, so the first map is taken."""
    viewer = make_napari_viewer()
    combo = LayerCombo(viewer, Labels, none_first=True, prefer_layer=True)
    assert _items(combo) == [NONE] and combo.currentText() == NONE
    viewer.add_image(np.zeros((2, 4, 4)), name="image")
    assert combo.currentText() == NONE
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name="a")
    assert combo.currentText() == "a"


def test_the_none_entry_is_no_layer_even_beside_a_layer_of_that_name(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((2, 4, 4), np.uint8), name=NONE)
    first, last = LayerCombo(viewer, Labels, none_first=True), LayerCombo(viewer, Labels, optional=True)
    assert _items(first) == [NONE, NONE] and first.currentIndex() == 0 and first.layer() is None
    first.setCurrentIndex(1)
    assert first.layer() is viewer.layers[NONE]
    last.setCurrentIndex(1)
    assert _items(last) == [NONE, NONE] and last.layer() is None
    last.setCurrentIndex(0)
    assert last.layer() is viewer.layers[NONE]
