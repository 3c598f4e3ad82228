"""MAISI's inputs for a sample: the user's label map in MAISI's label values, or one generated from
anatomy sizes, on the bundle's output grid, with the body regions and voxel size (:mod:`..models.bundle_maisi`).

A user's label values mean MAISI classes only as :mod:`..data.label_mapping` decides: by the names
the file or layer gives them (the same names as in the bundle's ``configs/label_dict.json``; synonyms
are not matched here: "tumour" is none of MAISI's five tumours),
by ``VALUE=CLASS`` specs (CLI ``--map``), or, confirmed with ``identity``, by equal numbers; 0
without a name is background. Every mapped class must be a value of label_dict.json, 0 (background)
or 200 (body); anything else is refused naming the file and the values.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence

import numpy as np
import torch

from ..data import label_mapping
from ..data.label_mapping import LabelMapping
from ..errors import InputError, ModelError
from ..io.volume import Volume
from ..models.bundle_maisi import AUTO, REGION_INDEX, MaisiModel, body_regions
from ..models.bundle_maisi_masks import MASK_SPACING, anatomy_sizes
from ..progress import CancelToken, Progress
from .sample_inputs import RAS, Grid, label_grid, mapping_notes, mask_labels


def maisi_inputs(m: MaisiModel, mask: Volume | None, named: Mapping[str, float | str], label_map: Sequence[str],
                 seed: int, cancel: CancelToken, device: torch.device
                 ) -> Generator[Progress, None, tuple[torch.Tensor, Grid, dict[str, object]]]:
    """The ControlNet condition (1, 8, X, Y, Z), the output grid, and metadata for the result (``notes``;
    ``label_map``: a generated label map as a Volume on that grid). Without ``mask``, the label map is
    generated from the anatomy sizes in ``named`` (yielding the mask model's steps)."""
    spacing = (float(named["spacing_xy"]), float(named["spacing_xy"]), float(named["spacing_z"]))
    if mask is None:
        if m.masks is None:
            raise InputError(f"Model '{m.source}' (MAISI) needs a label map (mask): it cannot generate one because "
                             f"{m.masks_missing}.")
        if label_map:
            raise InputError("A label mapping (--map) applies to a given label map; none was given.")
        raw = yield from m.masks.generate(anatomy_sizes(named), int(seed), cancel, device)
        raw_map = Volume(np.ascontiguousarray(raw.transpose(2, 1, 0)), (MASK_SPACING,) * 3, direction=RAS, is_label=True)
        labels, grid = label_grid(raw_map, spacing, m.image_shape)
        note = "label map generated from the anatomy sizes by the bundle's mask-generation networks"
        made = Volume(np.ascontiguousarray(labels.transpose(2, 1, 0)), grid.spacing, grid.origin, grid.direction,
                      is_label=True, metadata={"source": "MAISI label map from anatomy sizes"})
        meta: dict[str, object] = {"notes": [note], "label_map": made}
    else:
        data, mapping = maisi_labels(m, mask, label_map)
        labels, grid = label_grid(mask.with_data(data), spacing, m.image_shape)
        meta = mapping_notes(mapping, label_mapping.user_label_names(mask.metadata), m.classes, "MAISI")
    top, bottom = regions(labels, named)
    return m.set_inputs(labels, spacing, top, bottom), grid, meta


def regions(labels: np.ndarray, named: Mapping[str, float | str]) -> tuple[int | None, int | None]:
    """(top, bottom) body-region index: the chosen ones, "auto" from the label map; None where the bundle's
    UNet takes none. InputError when the top region lies below the bottom one."""
    if "top_region" not in named:
        return None, None
    chosen = [named["top_region"], named["bottom_region"]]
    auto = body_regions(labels) if AUTO in chosen else (0, 0)
    top, bottom = (auto[i] if c == AUTO else REGION_INDEX[str(c)] for i, c in enumerate(chosen))
    if top > bottom:
        raise InputError(f"The top body region ({chosen[0]}) lies below the bottom one ({chosen[1]}): MAISI's regions "
                         "run head, chest/thorax, abdomen, pelvis/lower from top to bottom.")
    return top, bottom


def maisi_labels(m: MaisiModel, mask: Volume, specs: Sequence[str]) -> tuple[np.ndarray, LabelMapping]:
    """The mask's values as MAISI label values (same shape) and the mapping used; InputError naming the
    values and the bundle's label_dict.json for values without a MAISI class."""
    where = mask.metadata.get("source", "The label map")
    if mask.is_time_series:
        raise InputError(f"{where}: MAISI takes one label map, not a series.")
    if not m.classes:
        raise ModelError(f"MAISI's label classes are in '{m.label_dict_path}' (downloaded with the bundle's weights, "
                         "see its large_files.yml), which is missing; napari-medgen does not guess what label values mean.")
    values, names = mask_labels(mask, where)
    try:
        explicit, identity = label_mapping.parse_map(specs, m.classes, 2**8)
    except InputError as exc:  # its list of classes would run to 256 entries: name the file instead
        raise InputError(f"{str(exc).split(';')[0].rstrip('.')}; MAISI's classes are the names and values in "
                         f"'{m.label_dict_path}', with 0 background and 200 body.") from None
    proposal = label_mapping.propose(values, names, m.classes)
    # names must be MAISI's own: with five tumour classes, the synonym "tumour" would mean its "lung tumor"
    proposal = {v: c if c is None or _same(names.get(v, "background"), m.classes[c]) else None
                for v, c in proposal.items()}
    table = {int(v): explicit.get(int(v), proposal[int(v)]) for v in values}
    table.update({v: v for v, c in table.items() if c is None and identity and v not in names})
    unmapped = [v for v, c in table.items() if c is None]
    if unmapped:
        shown = ", ".join(f"{v} ({names[v]})" if v in names else str(v) for v in unmapped[:12])
        raise InputError(f"{where}: label value(s) {shown} have no MAISI class. Name them as in '{m.label_dict_path}', "
                         f"map them (--map VALUE=CLASS, e.g. --map {unmapped[0]}=liver), or confirm that the values are "
                         "MAISI's label values (--map identity).")
    foreign = sorted({c for c in table.values() if c not in m.classes})
    if foreign:
        raise InputError(f"{where}: label value(s) {foreign[:12]} are not MAISI classes: '{m.label_dict_path}' lists "
                         "its 132 classes (values 1..132), with 0 background and 200 body.")
    mapping = LabelMapping({v: int(c) for v, c in table.items()})
    return mapping.apply(mask.data, where), mapping


def _same(a: str, b: str) -> bool:
    """The same name, ignoring case, spaces, ``_ - / .``."""
    return label_mapping.normalize_name(a).replace(" ", "") == label_mapping.normalize_name(b).replace(" ", "")
