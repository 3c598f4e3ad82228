"""Usefulness experiments: in-domain arms on a tiny 64 px phantom set; under domain shift (phantom vendors,
folders with odd label values, the CLI) with tiny settings."""

from __future__ import annotations

import numpy as np
import pytest

from napari_medgen.data.label_mapping import parse_map
from napari_medgen.errors import Cancelled, InputError
from napari_medgen.progress import CancelToken, collect, run_to_completion
from napari_medgen.tasks.usefulness import SegData, dice_per_class, phantom_data, segment, train_unet, usefulness


@pytest.fixture(autouse=True)
def one_thread():
    """UNet training steps are tiny: on a shared 2-core machine two torch threads only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    # the phantom's own renderer stands in for the synthesis model here (tests only)
    return phantom_data(6, 8, 6, source="renderer", size=64)


def test_phantom_data_shapes_and_labels(tiny):
    real, syn, held = tiny
    assert real.images.shape == (6, 64, 64) and syn.images.shape == (8, 64, 64) and held.labels.shape == (6, 64, 64)
    assert 0 <= syn.images.min() and syn.images.max() <= 1 and syn.labels.max() <= 7
    assert not np.array_equal(real.labels, held.labels[:6])  # held-out subjects differ from training ones


def test_training_learns_the_body(tiny):
    real, _, held = tiny
    net = run_to_completion(train_unet(real, 8, 40, seed=0))
    d = dice_per_class(segment(net, held.images), held.labels, 8)
    assert d[0] > 0.8  # body is large and bright: 40 steps suffice, an untrained net scores far less


def test_experiment_table_has_all_arms(tiny, tmp_path):
    real, syn, held = tiny
    result = run_to_completion(usefulness(real, syn, held, steps=5, reduced_fraction=0.5, csv_path=tmp_path / "u.csv",
                                          plot_path=tmp_path / "u.png"))
    arms = [r["arm"] for r in result.rows]
    assert arms == ["real", "real+synthetic", "50% real", "50% real+synthetic"]
    assert [r["n_real"] for r in result.rows] == [6, 6, 3, 3] and [r["n_synthetic"] for r in result.rows] == [0, 8, 0, 8]
    assert all(0 <= r["dice_mean"] <= 1 for r in result.rows) and "dice_tumour" in result.rows[0]
    assert (tmp_path / "u.csv").read_text().startswith("arm,") and (tmp_path / "u.png").exists()


def test_synthetic_images_come_from_a_spade_model(tmp_path):
    import torch

    from napari_medgen.data.phantom import LABELS
    from napari_medgen.models.spade import build_spade, network_config
    from napari_medgen.models.store import save_model

    cfg = network_config(n_classes=8, input_shape=[64, 64], channels=[8, 16], spade_hidden=8, z_dim=4)
    torch.manual_seed(0)
    card = {"family": "spade", "network": cfg, "shape": [64, 64], "plane_spacing": [6.0, 6.0],
            "label_names": {str(k): v for k, v in LABELS.items()},
            "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5, "lo_value": 0.0, "hi_value": 1.0}}
    save_model(tmp_path / "spade_tiny", build_spade(cfg), card)
    real, syn, _ = phantom_data(2, 3, 2, source=str(tmp_path / "spade_tiny"), size=64)
    assert syn.images.shape == (3, 64, 64) and np.isfinite(syn.images).all() and syn.images.max() <= 1
    assert not np.allclose(syn.images[0], syn.images[1])  # different label maps and styles


def test_cancel_and_bad_input(tiny):
    real, syn, held = tiny
    token = CancelToken()
    task = usefulness(real, syn, held, steps=50, cancel=token)
    next(task)
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_completion(task)
    small = SegData(real.images[:, :32, :32], real.labels[:, :32, :32])
    with pytest.raises(InputError, match="same size"):
        run_to_completion(usefulness(small, syn, held, steps=1))


# --- domain shift (tasks/domain_shift, seg_domains, target_synthesis; medgen usefulness) ------------------------

from napari_medgen.tasks import domain_shift, seg_domains, target_synthesis  # noqa: E402


@pytest.fixture(scope="module")
def synth():
    from napari_medgen.models.synthesizer import Synthesizer

    return Synthesizer("spade_phantom", "cpu")


@pytest.fixture(scope="module")
def grid(synth):
    return seg_domains.Grid(synth.slice_shape, synth.plane_spacing, synth.label_names)


def test_mean_ci_is_the_student_t_interval():
    mean, half = domain_shift.mean_ci([1.0, 2.0, 3.0, float("nan")])
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert np.isnan(domain_shift.mean_ci([0.5])[1])


@pytest.mark.parametrize("kw, match", [
    ({"arms": ("real", "mixup")}, "Unknown arm 'mixup'"),
    ({"style": "vendor"}, "Unknown style source"),
    ({"train": "phantom:mri"}, "Unknown phantom domain 'phantom:mri'"),
    ({"tests": ("phantom:mr_vendor_a",)}, "name an unseen one"),
    ({"fraction": 1.0}, "between 0 and 1"),
])
def test_settings_refuse_bad_choices(kw, match):
    with pytest.raises(InputError, match=match):
        domain_shift.ShiftSettings(**kw)


def test_folder_without_labels_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="labels/"):
        domain_shift.ShiftSettings(train=str(tmp_path))


def test_target_styles_take_the_look_of_the_target_vendor(synth, grid):
    """Styles encoded from unlabelled vendor-b images are nearer the model's own vendor-b style than its
    vendor-a style, and images made with them have vendor b's dark blood pool inside a brighter myocardium."""
    _, refs_b = seg_domains.test_sets("phantom:mr_vendor_b", grid, 1, 3)
    _, refs_ct = seg_domains.test_sets("phantom:ct", grid, 1, 2)
    styles = target_synthesis.target_styles(synth, [refs_b, refs_ct])
    assert styles[0].shape == (3, synth.style_dim) and styles[1].shape == (2, synth.style_dim)
    named = synth.named_styles()
    for s in styles[0]:
        assert np.linalg.norm(s - named["mr_vendor_b"]) < np.linalg.norm(s - named["mr_vendor_a"])
    labels = seg_domains.training_set("phantom:mr_vendor_a", grid, 2, seed=0).labels
    syn = run_to_completion(target_synthesis.synthetic_set(synth, labels, [styles[0][:1]], grid.names))
    blood, myo = syn.images[syn.labels == 3].mean(), syn.images[syn.labels == 4].mean()
    real_a = seg_domains.training_set("phantom:mr_vendor_a", grid, 2, seed=0)
    assert blood < myo and real_a.images[real_a.labels == 3].mean() > real_a.images[real_a.labels == 4].mean()


def test_ct_references_are_mapped_into_the_model_window(synth):
    norm = synth.card["normalization"]
    ct = np.linspace(-1000, 600, 128 * 128, dtype=np.float32).reshape(128, 128)
    mapped = target_synthesis.in_model_units(ct, norm)
    assert norm["lo_value"] - 1e-3 <= mapped.min() and mapped.max() <= norm["hi_value"] + 1e-3
    mr = np.linspace(0, 0.9, 128 * 128, dtype=np.float32).reshape(128, 128)
    np.testing.assert_array_equal(target_synthesis.in_model_units(mr, norm), mr)  # MR a.u. kept as they are


def test_label_pool_adds_deformed_and_vae_maps(grid):
    labels = seg_domains.training_set("phantom:mr_vendor_a", grid, 2, seed=1).labels
    vae = target_synthesis.load_label_vae("label_vae_phantom", grid.names)
    pool = target_synthesis.label_pool(labels, grid.plane_spacing, 0, n_deformed=3, n_vae=2, vae=vae)
    assert pool.shape == (7, *grid.shape) and pool.max() < grid.n_classes
    np.testing.assert_array_equal(pool[:2], labels)
    assert all(not np.array_equal(pool[k], labels[0]) and not np.array_equal(pool[k], labels[1]) for k in range(2, 7))


TINY = dict(seeds=2, steps=3, n_train=3, n_test=2, n_style=1, n_synthetic=1)


def test_phantom_experiment_table_csv_plot_and_progress(tmp_path):
    s = domain_shift.ShiftSettings(tests=("phantom:mr_vendor_a", "phantom:mr_vendor_b"),
                                   arms=("real", "augment", "reduced"), **TINY)
    seen, result = collect(domain_shift.experiment(s, csv_path=tmp_path / "u.csv", plot_path=tmp_path / "u.png"))
    assert [(r["arm"], r["domain"]) for r in result.rows] == [
        (a, d) for a in ("real", "augment", "reduced") for d in ("mr_vendor_a", "mr_vendor_b", "unseen mean")]
    assert len(result.per_seed) == 2 * 3 * 3 and all(r["n_seeds"] == 2 for r in result.rows)
    red = result.row("reduced", "mr_vendor_b")
    assert red["n_real"] == 1 and red["n_synthetic"] == (1 + 1 + 1) * 1  # 1 real map + 1 elastic + 1 VAE, 1 target
    assert result.row("real", "unseen mean")["dice_mean"] == pytest.approx(result.row("real", "mr_vendor_b")["dice_mean"])
    assert all(np.isfinite(r["ci95_mean"]) and 0 <= r["dice_mean"] <= 1 for r in result.rows)
    steps = [p.step for p in seen]
    assert steps == sorted(steps) and seen[-1].step == seen[-1].total == 2 * 3 * 3
    text = (tmp_path / "u.csv").read_text().splitlines()
    assert text[0].startswith("arm,domain,seed,n_seeds") and "dice_tumour" in text[0] and len(text) == 1 + 9 + 18
    assert (tmp_path / "u.png").read_bytes()[:4] == b"\x89PNG"


def test_experiment_cancels_without_writing(tmp_path):
    token = CancelToken()
    task = domain_shift.experiment(domain_shift.ShiftSettings(arms=("real",), **{**TINY, "steps": 500}),
                                   csv_path=tmp_path / "u.csv", cancel=token)
    while next(task).step < 2:
        pass
    token.cancel()
    with pytest.raises(Cancelled):
        run_to_completion(task)
    assert not (tmp_path / "u.csv").exists()


def write_folder(root, seeds, style, scale=10):
    """A domain folder: 2-slice phantom volumes in ``style`` whose label values are 10 x the phantom's."""
    from napari_medgen.data.phantom import make_phantom
    from napari_medgen.io.volume import Volume
    from napari_medgen.io.writers import write_volume

    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for s in seeds:
        img, lab = make_phantom(seed=s, shape=(2, 128, 128), spacing=(3.0, 3.0, 5.0), style=style)
        write_volume(img, root / "images" / f"case{s}.nii.gz")
        write_volume(Volume((lab.data.astype(np.uint8) * scale), lab.spacing, is_label=True),
                     root / "labels" / f"case{s}.nii.gz")
    return root


ODD_MAP = ("10=body,20=lung,30=lv_blood,40=myocardium", "50=rv,60=spine,70=tumour")


def test_folders_with_odd_label_values(tmp_path, grid):
    train = write_folder(tmp_path / "site_a", [1, 2], "mr_vendor_a")
    test = write_folder(tmp_path / "site_b", [3, 4], "mr_vendor_b")
    with pytest.raises(InputError, match=r"has label values .*10 \(unnamed\)"):
        seg_domains.training_set(str(train), grid, 0, 0)
    explicit, _ = parse_map(ODD_MAP, grid.names, grid.n_classes)
    data = seg_domains.training_set(str(train), grid, 0, 0, explicit)
    assert data.images.shape == (4, *grid.shape) and set(np.unique(data.labels)) <= set(range(8))
    assert {1, 2, 3, 4}.issubset(set(np.unique(data.labels)))
    s = domain_shift.ShiftSettings(train=str(train), tests=(str(test),), arms=("real", "synthetic"),
                                   label_map=ODD_MAP, **{**TINY, "seeds": 1})
    assert s.label_vae is None  # 'auto' uses the phantom's label VAE only for the phantom
    result = run_to_completion(domain_shift.experiment(s))
    row = result.row("synthetic", "site_b")
    assert row["n_real"] == 4 and row["n_synthetic"] == 4 + 1  # 4 real maps + 1 elastic, one target style
    assert "site_b 2" in result.notes[0]  # case3 gave its image for the style; case4's 2 slices are the test set


def test_cli_runs_refuses_existing_outputs_and_bad_maps(tmp_path, capsys):
    from napari_medgen.cli import main

    args = ["--quiet", "--threads", "1", "usefulness", "--arms", "real", "--seeds", "1", "--steps", "2",
            "--subjects", "2", "--test-subjects", "1", "--test", "phantom:mr_vendor_b", "--csv", str(tmp_path / "u.csv")]
    assert main(args) == 0
    assert "unseen mean" in capsys.readouterr().out and (tmp_path / "u.csv").exists()
    assert main(args) == 2 and "exists; add --overwrite" in capsys.readouterr().err
    train = write_folder(tmp_path / "site_a", [1], "mr_vendor_a")
    bad = ["--quiet", "usefulness", "--train", str(train), "--test", "phantom:mr_vendor_b", "--map", "10=kidney"]
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'kidney' is not a class" in err[0]
