"""MAISI (maisi_ct_generative) from its exact published configs, random weights at reduced sizes, on the CPU:
label map -> ControlNet -> CT; the label map's values checked against the bundle's label_dict.json and mapped
by name, --map or a confirmed identity; without a label map, one generated from anatomy sizes by the
bundle's mask-generation networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo  # noqa: F401  MONAI's ControlNetMaisi.forward imports it on its first call (one-time, ~20 s)

from napari_medgen.errors import InputError, ModelError
from napari_medgen.io.volume import Volume
from napari_medgen.models.bundle import describe_bundle, load_bundle
from napari_medgen.models.bundle_maisi import MaisiModel, label_classes
from napari_medgen.models.bundle_maisi_masks import ANATOMY, clean_up, size_key
from napari_medgen.progress import run_to_completion
from napari_medgen.tasks.sample import sample

from .test_bundle import FIXTURES, MAISI, REDUCED, open_small, publish

SHAPE = (32, 32, 32)


def _labels(**meta: object) -> Volume:
    lab = np.zeros((20, 40, 40), np.int16)
    lab[4:16, 8:32, 8:32] = 200  # body
    lab[8:12, 14:26, 14:26] = 1  # liver: abdomen
    lab[12:14, 14:26, 14:26] = 28  # left lung upper lobe: chest
    return Volume(lab, (1.5, 1.5, 2.0), origin=(10.0, -5.0, 3.0), is_label=True, metadata=dict(meta))


def _run(model, **kw) -> Volume:
    return run_to_completion(sample(model, steps=kw.pop("steps", 1), shape=SHAPE, device="cpu", **kw))


@pytest.fixture(scope="module")
def maisi(tmp_path_factory) -> MaisiModel:
    return open_small(MAISI, tmp_path_factory.mktemp("maisi"))


def test_label_files_are_the_published_ones():
    """label_dict.json and label_dict_124_to_132.json are the files the bundle's large_files.yml downloads."""
    import hashlib

    sums = {n: hashlib.md5((FIXTURES / MAISI / "configs" / n).read_bytes()).hexdigest()
            for n in ("label_dict.json", "label_dict_124_to_132.json")}
    assert sums == {"label_dict.json": "c5fc6270c0fa2b4af8e67ba95a7dd5bd",
                    "label_dict_124_to_132.json": "85ab16bd93c70c5514143a031872297a"}


def test_fields_from_the_bundle():
    """Body regions (names from metadata.json, in MAISI's index order), voxel size (the config's), and the ten
    anatomy sizes of the mask-generation network (0..1, absent, auto)."""
    fields = {f.key: f for f in describe_bundle(FIXTURES / MAISI).condition_fields}
    assert fields["top_region"].choices == ("auto", "head", "chest/thorax", "abdomen", "pelvis/lower")
    assert (fields["spacing_xy"].default, fields["spacing_xy"].low, fields["spacing_xy"].high) == (1.0, 0.5, 3.0)
    sizes = [fields[size_key(a)] for a in ANATOMY]
    assert [f.key for f in sizes][:3] == ["size_gallbladder", "size_liver", "size_stomach"]
    assert all((f.default, f.low, f.high, f.special) == ("auto", 0.0, 1.0, ("auto", "absent")) for f in sizes)


def test_controlnet_path(maisi):
    assert maisi.scale_factor == pytest.approx(0.8)  # the checkpoint's entry
    assert maisi.image_shape == (512, 512, 512) and maisi.spacing == (1.0, 1.0, 1.0)  # the config's output
    mask = _labels()
    vol = _run(maisi, steps=2, mask=mask, condition="spacing_xy=1.5,spacing_z=2", label_map=["identity"])
    assert vol.data.shape == (1, *SHAPE) and vol.spacing == (1.5, 1.5, 2.0)
    assert np.allclose(vol.direction, np.diag([-1, -1, 1])) and vol.metadata["modality"] == "CT"
    centre = vol.index_to_physical(np.array([[15.5, 15.5, 15.5]]))[0]
    assert np.allclose(centre, mask.index_to_physical(np.array([[19.5, 19.5, 9.5]]))[0])  # centred on the mask
    assert vol.data.min() >= -1000 and vol.data.max() <= 1000 and vol.data.std() > 0  # HU range
    background = maisi.labels[0, 0].numpy().transpose(2, 1, 0) == 0  # (x, y, z) -> (z, y, x)
    assert background.any() and (vol.data[0][background] == -1000).all()
    assert (vol.data[0][~background] > -1000).mean() > 0.5
    regions = maisi.region_tensors  # auto: chest (lung 28) at the top, abdomen (liver 1) at the bottom
    assert regions["top_region_index_tensor"].argmax() == 1 and regions["bottom_region_index_tensor"].argmax() == 2
    assert torch.equal(regions["spacing_tensor"], torch.tensor([[150.0, 150.0, 200.0]]))
    ckpt = torch.load(next((Path(maisi.source) / "models").glob("controlnet*.pt")), weights_only=True)
    assert all(torch.equal(v, ckpt["controlnet_state_dict"][k]) for k, v in maisi.controlnet.state_dict().items())


def test_controlnet_condition_changes_the_prediction(maisi):
    labels = np.zeros(SHAPE, np.int64)
    labels[8:24, 8:24, 8:24] = 28
    seg = maisi.set_inputs(labels, (1.0, 1.0, 1.0), 1, 2)
    assert seg.shape == (1, 8, *SHAPE) and torch.equal(seg[0, :, 16, 16, 16], torch.tensor([0., 0, 1, 1, 1, 0, 0, 0]))
    x, t = torch.randn(1, 4, 8, 8, 8), torch.tensor([500.0])
    with torch.no_grad():
        assert not torch.allclose(maisi.predict(x, t, seg), maisi.predict(x, t, torch.zeros_like(seg)))


def test_label_values_never_change_meaning_silently(maisi):
    """Unnamed values need --map or identity; names map by meaning (user 7 named liver is MAISI's 1, not
    MAISI's 7, inferior vena cava); classes must be in label_dict.json."""
    lab = np.zeros((8, 16, 16), np.int16)
    lab[2:6, 4:12, 4:12] = 7
    lab[3:5, 6:10, 6:10] = 2
    unnamed = Volume(lab, is_label=True, metadata={"source": "my.nii.gz"})
    with pytest.raises(InputError, match=r"my\.nii\.gz: label value\(s\) 2, 7 have no MAISI class.*--map identity"):
        _run(maisi, mask=unnamed)
    named = unnamed.with_data(lab, label_names={7: "Liver", 2: "lung"})
    with pytest.raises(InputError, match=r"2 \(lung\) have no MAISI class.*label_dict\.json"):
        _run(maisi, mask=named, condition={"top_region": "abdomen", "bottom_region": "abdomen"})
    generic = unnamed.with_data(lab, label_names={7: "liver", 2: "tumour"})  # the project's synonym of "lung tumor"
    with pytest.raises(InputError, match=r"2 \(tumour\) have no MAISI class"):
        _run(maisi, mask=generic)
    vol = _run(maisi, mask=named, label_map=["2=left lung upper lobe"])
    assert set(np.unique(maisi.labels).tolist()) == {0, 1, 28}  # 7 -> liver 1, 2 -> 28
    assert vol.metadata["notes"] == ["label values as MAISI classes: 2 (lung) -> 28 left lung upper lobe; "
                                     "7 (Liver) -> 1 liver"]
    with pytest.raises(InputError, match=r"'kidney' is not a class of this model; MAISI's classes are the names .*"
                                         r"label_dict\.json'"):
        _run(maisi, mask=named, label_map=["2=kidney"])
    for value in (150, 300):  # within MAISI's 8 bits but not a class; beyond them
        odd = Volume(np.full((4, 4, 4), value, np.int16), is_label=True)
        with pytest.raises(InputError, match=rf"\[{value}\] are not MAISI classes: '.*label_dict\.json' lists"):
            _run(maisi, mask=odd, label_map=["identity"])


def test_regions_and_voxel_size_checked(maisi):
    plain = Volume(np.full((8, 16, 16), 200, np.int16), is_label=True)
    with pytest.raises(InputError, match="no label that marks a MAISI body region"):
        _run(maisi, mask=plain, label_map=["identity"])
    vol = _run(maisi, mask=plain, label_map=["identity"], condition={"top_region": "head", "bottom_region": "head"})
    assert vol.data.shape == (1, *SHAPE)
    with pytest.raises(InputError, match=r"top body region \(pelvis/lower\) lies below the bottom one \(head\)"):
        _run(maisi, mask=plain, label_map=["identity"], condition="top_region=pelvis/lower,bottom_region=head")
    with pytest.raises(InputError, match=r"'spacing_z' .* must lie in \[0.5, 5.0\], got 9"):
        _run(maisi, mask=plain, label_map=["identity"], condition="spacing_z=9")


class _Recorder(torch.nn.Module):
    """Wraps a network and keeps the cross-attention context of each call."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.contexts = net, []

    def forward(self, x, timesteps, context=None):
        self.contexts.append(context.clone())
        return self.net(x, timesteps=timesteps, context=context)


def _sizes_table(folder, rows) -> None:
    (folder / "configs" / "all_anatomy_size_condtions.json").write_text(json.dumps([{"organ_size": r} for r in rows]))


def test_label_map_generated_from_anatomy_sizes(maisi):
    """No label map: the mask networks, conditioned on the sizes (the set ones, the rest from the closest
    combination of the bundle's table), generate one; the ControlNet makes the CT from it."""
    far, near = [0.9] * 5 + [-1.0] * 5, [0.3, 0.4, 0.2, 0.6, 0.5] + [-1.0] * 4 + [0.1]
    _sizes_table(Path(maisi.source), [far, near])
    unet = maisi.masks.unet
    maisi.masks.unet = recorder = _Recorder(unet)
    try:
        with pytest.raises(InputError, match="generates one from anatomy sizes: set at least one"):
            _run(maisi)
        vol = _run(maisi, condition="size_liver=0.5,size_hepatic_tumor=absent,top_region=chest/thorax,"
                                    "bottom_region=abdomen")
    finally:
        maisi.masks.unet = unet
    expected = torch.tensor([[near[:1] + [0.5] + near[2:7] + [-1.0] + near[8:]]])
    assert len(recorder.contexts) == 2 and all(torch.equal(c, expected) for c in recorder.contexts)
    made = vol.metadata["label_map"]
    assert made.is_label and made.data.shape == SHAPE and made.spacing == vol.spacing
    assert np.allclose(made.affine(), vol.affine()) and vol.data.shape == (1, *SHAPE)
    assert set(np.unique(made.data).tolist()) <= set(maisi.classes)  # remapped to MAISI's label values
    assert np.array_equal(made.data, maisi.labels[0, 0].numpy().transpose(2, 1, 0))  # what the ControlNet saw
    assert (vol.data[0][made.data == 0] == -1000).all()
    with pytest.raises(InputError, match=r"'size_liver' \(liver size\) .* must lie in \[0.0, 1.0\] or one of auto, "
                                         r"absent, got 1.5"):
        _run(maisi, condition="size_liver=1.5")
    with pytest.raises(InputError, match="one tumour at a time .*lung tumor, bone lesion"):
        _run(maisi, condition="size_lung_tumor=0.2,size_bone_lesion=0.3")
    with pytest.raises(InputError, match=r"A label mapping \(--map\) applies to a given label map"):
        _run(maisi, condition="size_liver=0.5", label_map=["identity"])


def test_bundle_opens_without_mask_weights(tmp_path):
    m = load_bundle(publish(MAISI, tmp_path, masks=False), overrides=REDUCED[MAISI])
    with pytest.raises(InputError, match=r"cannot generate one because the bundle's mask-generation weights "
                                         r"'\./models/mask_generation_diffusion_unet\.pt'"):
        _run(m, condition="size_liver=0.5")
    assert _run(m, mask=_labels(), label_map=["identity"]).data.shape == (1, *SHAPE)


def test_mask_generation_needs_its_files(tmp_path):
    folder = publish(MAISI, tmp_path)
    m = load_bundle(folder, overrides=REDUCED[MAISI])
    missing = r"' \(downloaded with the bundle's weights, see its large_files\.yml\), which is missing"
    with pytest.raises(ModelError, match=rf"all_anatomy_size_condtions\.json{missing}; set all ten sizes"):
        _run(m, condition="size_liver=0.5")
    sizes = ",".join(f"{size_key(a)}={'absent' if i >= 5 else 0.5}" for i, a in enumerate(ANATOMY))
    assert _run(m, condition=sizes + ",top_region=head,bottom_region=pelvis/lower").data.shape == (1, *SHAPE)
    (folder / "configs" / "label_dict_124_to_132.json").unlink()
    with pytest.raises(ModelError, match=rf"label_dict_124_to_132\.json{missing}"):
        _run(m, condition=sizes)
    (folder / "configs" / "label_dict.json").unlink()
    m.classes = label_classes(m.label_dict_path)  # what opening the bundle reads
    with pytest.raises(ModelError, match=rf"label_dict\.json{missing}; napari-medgen does not guess"):
        _run(m, mask=_labels(), label_map=["identity"])


def test_cli(tmp_path, monkeypatch):
    """medgen sample on MAISI: --map reaches the task; without --mask the generated label map is written too."""
    import napari_medgen.tasks.sample as task
    from napari_medgen.cli import main
    from napari_medgen.io.readers import read_volume

    folder = publish(MAISI, tmp_path)
    _sizes_table(folder, [[0.5] * 5 + [-1.0] * 5])
    sets = [a for k, v in REDUCED[MAISI].items() for a in ("--set", f"{k}={json.dumps(v)}")]
    argv = ["--device", "cpu", "--quiet", "sample", "--model", str(folder), "--steps", "1", "--shape", "32", "32", "32",
            *sets, "--out"]
    assert main([*argv, str(tmp_path / "b"), "--condition", "size_colon=0.7,top_region=head,bottom_region=head"]) == 0
    ct, labels = (read_volume(tmp_path / "b" / n) for n in ("sample_000.nii.gz", "labels.nii.gz"))
    assert labels.data.shape == ct.data.shape == SHAPE and np.allclose(labels.affine(), ct.affine())
    seen = {}

    def fake(model, **kw):
        seen.update(kw)
        raise InputError("stop")
        yield

    monkeypatch.setattr(task, "sample", fake)
    assert main([*argv, str(tmp_path / "c"), "--map", "1=liver", "--map", "identity"]) == 2
    assert seen["label_map"] == ["1=liver", "identity"]


def test_clean_up_follows_the_bundle():
    """The body's largest part only; tumours other than the asked-for one become their organ; hepatic vessel
    becomes liver."""
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[2:14, 2:14, 2:14] = 200
    lab[4:8, 4:8, 4:8] = 23  # lung tumour
    lab[8:11, 8:11, 8:11] = 25  # hepatic vessel
    lab[16:19, 16:19, 16:19] = 1  # a small separate part
    out = clean_up(lab, target=None)
    assert (out[16:19, 16:19, 16:19] == 0).all() and out[5, 5, 5] == 28 and out[9, 9, 9] == 1
    assert clean_up(lab, target=23)[5, 5, 5] == 23
