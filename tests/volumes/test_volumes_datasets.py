"""Volume datasets: records from a folder, labels and a table; transforms to the network grid;
the dataset with a DataLoader; a specific error for each kind of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import torch
from monai.data import MetaTensor, list_data_collate  # noqa: E402

from sciogen.volumes.datasets import (  # noqa: E402
    LoadVolumed,
    VolumeDataset,
    VolumeDatasetError,
    volume_records,
    volume_transforms,
)
from sciogen.volumes.io import (  # noqa: E402
    GeometryMismatchError,
    NotA3DVolumeError,
    UnreadableVolumeError,
    UnsupportedFormatError,
    VolumeError,
    VolumeNotFoundError,
    write_volume,
)
from sciogen.volumes.training import axcodes_affine  # noqa: E402

from ..helpers import write_dicom_series  # noqa: E402

SHARED_VOLUMES = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "volumes"
SHAPE = (20, 18, 16)
BLOCK = (slice(6, 14), slice(4, 12), slice(5, 11))  # the labelled block, voxel indices
# voxel -> world (RAS mm): x flipped (an "LAS" image), 1.5 x 1.5 x 2 mm, an origin off zero
AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, 1.5, 0, -10.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


def _phantom() -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, *SHAPE)`` image (0 outside a block of value 1) and its label (2 in the block, 0 outside)."""
    image = torch.zeros(1, *SHAPE)
    image[(0, *BLOCK)] = 1.0
    label = torch.zeros(1, *SHAPE)
    label[(0, *BLOCK)] = 2.0
    return image, label


def _world_centroid(mask: torch.Tensor, affine) -> np.ndarray:
    """The mean world position (mm) of a boolean ``(X, Y, Z)`` mask's voxels."""
    ijk = np.argwhere(np.asarray(mask)).mean(0)
    return (np.asarray(affine, dtype=np.float64) @ np.append(ijk, 1.0))[:3]


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    """``images/s{0,1,2}.nii.gz``, ``labels/s{i}.nrrd`` and ``table.csv`` (subject, visit, age, sex)."""
    for i in range(3):
        image, label = _phantom()
        write_volume(image, tmp_path / "images" / f"s{i}.nii.gz", AFFINE)
        write_volume(label, tmp_path / "labels" / f"s{i}.nrrd", AFFINE, label=True)
    (tmp_path / "table.csv").write_text(
        "image,subject,visit,age,sex\n"
        "s2.nii.gz,B,1,64.5,M\n"
        "s0.nii.gz,A,1,70,F\n"
        "\n"
        "s1.nii.gz,A,2,,F\n"
    )
    return tmp_path


# --------------------------------------------------------------------------- records


def test_records_from_a_folder_with_labels(dataset_dir):
    (dataset_dir / "images" / "notes.txt").write_text("not a volume")
    write_volume(_phantom()[0], dataset_dir / "images" / ".hidden.nii.gz", AFFINE)
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    assert records == [
        {"image": str(dataset_dir / "images" / f"s{i}.nii.gz"), "label": str(dataset_dir / "labels" / f"s{i}.nrrd")}
        for i in range(3)
    ]
    assert volume_records(dataset_dir / "images")[0] == {"image": str(dataset_dir / "images" / "s0.nii.gz")}


def test_records_from_a_table_keep_its_order_subjects_and_covariates(dataset_dir):
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels", table=dataset_dir / "table.csv")
    assert [Path(r["image"]).name for r in records] == ["s2.nii.gz", "s0.nii.gz", "s1.nii.gz"]
    assert [Path(r["label"]).name for r in records] == ["s2.nrrd", "s0.nrrd", "s1.nrrd"]
    assert [(r["subject"], r["visit"]) for r in records] == [("B", "1"), ("A", "1"), ("A", "2")]
    assert records[0]["age"] == 64.5 and records[1]["age"] == 70.0 and math.isnan(records[2]["age"])
    assert [r["sex"] for r in records] == ["M", "F", "F"]


def test_table_chooses_volumes_in_sub_folders_and_renamed_columns(tmp_path):
    for name in ("sub-01/ses-1/t1.nii.gz", "sub-01/ses-2/t1.nii.gz", "unused.nii.gz"):
        write_volume(_phantom()[0], tmp_path / "data" / name, AFFINE)
    for name in ("sub-01/ses-1/t1.nii", "sub-01/ses-2/t1.mha"):
        write_volume(_phantom()[1], tmp_path / "seg" / name, AFFINE, label=True)
    table = tmp_path / "participants.csv"
    table.write_text("participant,file,site\nsub-01,sub-01/ses-2/t1.nii.gz,3\nsub-02,sub-01/ses-1/t1.nii.gz,4\n")
    records = volume_records(tmp_path / "data", labels=tmp_path / "seg", table=table, image_column="file",
                             subject_column="participant", visit_column=None)
    assert [r["label"] for r in records] == [str(tmp_path / "seg/sub-01/ses-2/t1.mha"),
                                             str(tmp_path / "seg/sub-01/ses-1/t1.nii")]
    assert [(r["subject"], r["site"]) for r in records] == [("sub-01", 3.0), ("sub-02", 4.0)]
    assert all("visit" not in r for r in records)


def test_dicom_series_folder_is_a_volume(tmp_path):
    array = np.zeros((6, 10, 12))  # (z, y, x)
    array[1:5, 2:8, 3:9] = 100.0
    write_dicom_series(tmp_path / "scans" / "ct1", array, "1.2.826.0.1.3680043.2.1125.7.1", (1.0, 1.0, 2.0))
    (tmp_path / "scans" / "empty_folder").mkdir()
    records = volume_records(tmp_path / "scans")
    assert records == [{"image": str(tmp_path / "scans" / "ct1")}]
    item = VolumeDataset(records, (8, 8, 8), crop_foreground=False)[0]
    assert tuple(item["image"].shape) == (1, 8, 8, 8)
    np.testing.assert_allclose(item["image"].pixdim.numpy(), [1.0, 1.0, 2.0], atol=1e-6)


# --------------------------------------------------------------------------- transforms


def test_transforms_keep_image_and_label_aligned_in_ras(dataset_dir):
    """No resampling: the label block stays exactly on the image block, both reoriented to RAS."""
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    item = volume_transforms((24, 16, 16), crop_foreground=False)(records[0])
    image, label = item["image"], item["label"]
    assert isinstance(image, MetaTensor) and image.dtype == torch.float32 and tuple(image.shape) == (1, 24, 16, 16)
    assert label.dtype == torch.int64 and tuple(label.shape) == (1, 24, 16, 16)
    assert set(label.unique().tolist()) == {0, 2}
    assert set(image.unique().tolist()) == {-1.0, 1.0}  # background, padding -> -1; block -> 1
    assert torch.equal(label[0] == 2, image[0] == 1.0)
    np.testing.assert_allclose(np.diag(image.affine.numpy())[:3], [1.5, 1.5, 2.0])  # RAS: positive axes
    np.testing.assert_allclose(label.affine.numpy(), image.affine.numpy())
    block = torch.zeros(SHAPE, dtype=torch.bool)
    block[BLOCK] = True
    np.testing.assert_allclose(_world_centroid(label[0] == 2, label.affine), _world_centroid(block, AFFINE), atol=1e-6)


def test_resampling_to_a_spacing_keeps_world_positions_and_integer_labels(dataset_dir):
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    item = volume_transforms((12, 12, 12), spacing=3.0, crop_foreground=False)(records[0])
    image, label = item["image"], item["label"]
    np.testing.assert_allclose(image.affine.numpy()[:3, :3], np.diag([3.0, 3.0, 3.0]), atol=1e-6)
    np.testing.assert_allclose(label.affine.numpy(), image.affine.numpy())
    assert label.dtype == torch.int64 and set(label.unique().tolist()) <= {0, 2}
    assert -1.0 <= image.min() and image.max() <= 1.0
    block = torch.zeros(SHAPE, dtype=torch.bool)
    block[BLOCK] = True
    # the block's centre lands within half a 3 mm voxel of where it was
    assert np.abs(_world_centroid(label[0] == 2, label.affine) - _world_centroid(block, AFFINE)).max() <= 1.5
    assert image[label == 2].mean() > 0.5 and image[label == 0].mean() < -0.5


def test_foreground_crop_centres_the_block(dataset_dir):
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    label = volume_transforms((10, 10, 10))(records[0])["label"][0]
    # the 8 x 8 x 6 block, cropped to and centred in 10^3: one voxel of padding on x and y, two on z
    assert torch.equal(label[1:9, 1:9, 2:8], torch.full((8, 8, 6), 2))
    assert int((label == 2).sum()) == 8 * 8 * 6


def test_brain_mri_with_46_labels(tmp_path):
    """The voxelmorph brain scan and its 46-label segmentation (2 mm, LIA), resampled to 4 mm RAS."""
    path = SHARED_VOLUMES / "voxelmorph" / "test_scan.npz"
    if not path.is_file():
        pytest.skip(f"shared brain MRI not found at {path} (clone with ../shared beside the repo)")
    with np.load(path) as archive:
        scan, seg = archive["vol"][::2, ::2, ::2], archive["seg"][::2, ::2, ::2]  # 80 x 96 x 112
    affine = axcodes_affine("LIA").numpy() @ np.diag([2.0, 2.0, 2.0, 1.0])
    write_volume(torch.from_numpy(scan.astype(np.float32))[None], tmp_path / "images" / "brain.nii.gz", affine)
    write_volume(torch.from_numpy(seg)[None], tmp_path / "labels" / "brain.nii.gz", affine, label=True)
    records = volume_records(tmp_path / "images", labels=tmp_path / "labels")
    item = VolumeDataset(records, (48, 56, 48), spacing=4.0)[0]
    image, label = item["image"], item["label"]
    assert tuple(image.shape) == (1, 48, 56, 48) and label.dtype == torch.int64
    np.testing.assert_allclose(image.affine.numpy()[:3, :3], np.diag([4.0, 4.0, 4.0]), atol=1e-6)
    values = set(label.unique().tolist())
    assert values <= set(np.unique(seg).astype(int).tolist()) and len(values) >= 35  # small structures may vanish
    assert image.min() == -1.0 and image.max() == 1.0
    assert image[label > 0].mean() > image[label == 0].mean() + 0.5  # the labels lie on the brain


# --------------------------------------------------------------------------- dataset


def test_dataset_batches_with_two_workers_and_cache_gives_the_same(dataset_dir):
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels", table=dataset_dir / "table.csv")
    dataset = VolumeDataset(records, (16, 16, 16), spacing=2.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=list_data_collate)
    (batch,) = list(loader)
    assert tuple(batch["image"].shape) == (3, 1, 16, 16, 16) and tuple(batch["label"].shape) == (3, 1, 16, 16, 16)
    assert tuple(batch["image"].affine.shape) == (3, 4, 4)
    assert batch["subject"] == ["B", "A", "A"] and batch["sex"] == ["M", "F", "F"]
    torch.testing.assert_close(batch["age"], torch.tensor([64.5, 70.0, math.nan], dtype=torch.float64),
                               equal_nan=True)
    cached = VolumeDataset(records, (16, 16, 16), spacing=2.0, cache=True)
    assert len(cached) == 3
    for i in range(3):
        torch.testing.assert_close(cached[i]["image"].as_tensor(), batch["image"][i].as_tensor())
        assert torch.equal(cached[i]["label"].as_tensor(), batch["label"][i].as_tensor())


# --------------------------------------------------------------------------- errors


def _records_with_image(tmp_path: Path, write) -> list[dict]:
    folder = tmp_path / "bad"
    folder.mkdir()
    write(folder / "x.nii.gz")
    return [{"image": str(folder / "x.nii.gz")}]


@pytest.mark.parametrize("cache", [False, True])
def test_unreadable_file(tmp_path, cache):
    records = _records_with_image(tmp_path, lambda p: p.write_bytes(b"not a nifti file at all"))
    with pytest.raises(UnreadableVolumeError, match=r"x\.nii\.gz"):
        VolumeDataset(records, (8, 8, 8), cache=cache)[0]


def test_2d_image(tmp_path):
    records = _records_with_image(tmp_path, lambda p: nib.save(nib.Nifti1Image(np.ones((12, 10), np.float32),
                                                                               np.eye(4)), str(p)))
    with pytest.raises(NotA3DVolumeError, match=r"x\.nii\.gz.*expected a 3D volume"):
        VolumeDataset(records, (8, 8, 8))[0]


@pytest.mark.parametrize("change", ["spatial shape", "affine"])
def test_label_off_the_image_grid_names_both_files(dataset_dir, change):
    image, label = _phantom()
    if change == "spatial shape":
        write_volume(label[:, :-2], dataset_dir / "labels" / "s0.nrrd", AFFINE, label=True)
    else:
        write_volume(label, dataset_dir / "labels" / "s0.nrrd", AFFINE @ np.diag([1.0, 1.0, 1.1, 1.0]), label=True)
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    with pytest.raises(GeometryMismatchError, match=rf"s0\.nii\.gz.*s0\.nrrd.*differ in {change}"):
        VolumeDataset(records, (8, 8, 8))[0]
    assert VolumeDataset(records, (8, 8, 8))[1]["label"].dtype == torch.int64  # the others are fine


def test_non_integer_label(dataset_dir):
    write_volume(_phantom()[1] * 0.3, dataset_dir / "labels" / "s0.nrrd", AFFINE)
    records = volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    with pytest.raises(VolumeError, match=r"s0\.nrrd.*non-integer"):
        LoadVolumed()(records[0])


def test_folder_errors(tmp_path, dataset_dir):
    with pytest.raises(VolumeNotFoundError, match="no such volume folder"):
        volume_records(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VolumeDatasetError, match="no volumes found"):
        volume_records(tmp_path / "empty")
    with pytest.raises(VolumeNotFoundError, match="no such labels folder"):
        volume_records(dataset_dir / "images", labels=tmp_path / "no_labels")
    (dataset_dir / "labels" / "s1.nrrd").unlink()
    with pytest.raises(VolumeDatasetError, match=r"s1\.nii\.gz: no label for it.*labels/s1\{"):
        volume_records(dataset_dir / "images", labels=dataset_dir / "labels")
    write_volume(_phantom()[1], dataset_dir / "labels" / "s1.nii", AFFINE, label=True)
    write_volume(_phantom()[1], dataset_dir / "labels" / "s1.mha", AFFINE, label=True)
    with pytest.raises(VolumeDatasetError, match=r"s1\.nii\.gz: more than one label"):
        volume_records(dataset_dir / "images", labels=dataset_dir / "labels")


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        ("image,visit,age\ns0.nii.gz,1,3\n", VolumeDatasetError, r"missing column\(s\) \['subject'\]"),
        ("image,subject,visit\ns0.nii.gz,A,1\ns9.nii.gz,B,1\n", VolumeNotFoundError, r"line 3: .*'s9\.nii\.gz'"),
        ("image,subject,visit\ns0.nii.gz,A,1\ns1.nii.gz,B,1\ns2.nii.gz,A,1\n", VolumeDatasetError,
         r"line 4: subject / visit A / 1 is already on line 2"),
        ("image,subject,visit\ns0.nii.gz,A,1\ns0.nii.gz,B,1\n", VolumeDatasetError, r"line 3: .*already listed on line 2"),
        ("image,subject,visit\ns0.nii.gz,,1\n", VolumeDatasetError, r"line 2: empty 'subject' cell"),
        ("image,subject,visit\ns0.nii.gz,A,1,extra\n", VolumeDatasetError, r"line 2: 4 cells, but the header names 3"),
        ("image,subject,visit,label\ns0.nii.gz,A,1,AD\n", VolumeDatasetError, r"\['label'\] would overwrite"),
        ("image,subject,image\ns0.nii.gz,A,1\n", VolumeDatasetError, r"\['image'\] appear more than once"),
        ("image,subject,visit\n", VolumeDatasetError, "a header but no rows"),
        ("image,subject,visit\nnotes.txt,A,1\n", UnsupportedFormatError, r"line 2: .*'notes\.txt' is not a volume"),
    ],
    ids=["missing-column", "missing-file", "duplicate-subject-visit", "duplicate-file", "empty-subject",
         "extra-cell", "label-clash", "repeated-column", "no-rows", "not-a-volume"],
)
def test_table_errors_name_the_line(dataset_dir, table, error, message):
    (dataset_dir / "images" / "notes.txt").write_text("not a volume")
    (dataset_dir / "bad.csv").write_text(table)
    with pytest.raises(error, match=message):
        volume_records(dataset_dir / "images", table=dataset_dir / "bad.csv")


def test_table_not_found(dataset_dir):
    with pytest.raises(VolumeNotFoundError, match="no such table"):
        volume_records(dataset_dir / "images", table=dataset_dir / "missing.csv")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shape": (8, 8)}, "shape must be three"),
        ({"shape": (8, 0, 8)}, "shape must be three"),
        ({"spacing": -1.0}, "spacing must be"),
        ({"spacing": (1.0, 2.0)}, "spacing must be"),
        ({"percentiles": (99.0, 1.0)}, "percentiles must be"),
        ({"image_keys": ()}, "image_keys must name"),
    ],
)
def test_bad_options(options, message):
    kwargs = {"shape": (8, 8, 8), **options}
    with pytest.raises(ValueError, match=message):
        volume_transforms(**kwargs)


def test_bad_records(dataset_dir):
    with pytest.raises(ValueError, match="no records"):
        VolumeDataset([], (8, 8, 8))
    with pytest.raises(ValueError, match=r"record 1 must be a dict with a path under \['image'\]"):
        VolumeDataset([{"image": "a.nii"}, {"label": "b.nii"}], (8, 8, 8))
    with pytest.raises(TypeError, match="records must be a list of dicts"):
        VolumeDataset(str(dataset_dir / "images"), (8, 8, 8))
