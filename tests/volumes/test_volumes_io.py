"""Volume I/O: geometry-exact round trips, LPS/RAS, DICOM series, errors, normalisation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib  # noqa: E402
import numpy as np
import pytest
import SimpleITK as sitk  # noqa: E402
import torch
from monai.data import MetaTensor  # noqa: E402

from sciogen.volumes.io import (  # noqa: E402
    GeometryMismatchError,
    IntensityNormalization,
    NotA3DVolumeError,
    UnreadableVolumeError,
    UnsupportedFormatError,
    VolumeError,
    VolumeNotFoundError,
    check_same_geometry,
    read_volume,
    write_volume,
)

from ..helpers import write_dicom_series  # noqa: E402

SHARED_VOLUMES = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "volumes"
SHAPE = (8, 9, 10)


def _rotation(angles) -> np.ndarray:
    """A proper rotation from three angles (rad), Rz @ Ry @ Rx."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _oblique_affine() -> np.ndarray:
    """RAS affine: rotated axes, anisotropic spacing (0.7, 1.3, 2.5) mm, a non-zero origin."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation((0.3, -0.2, 0.5)) @ np.diag([0.7, 1.3, 2.5])
    affine[:3, 3] = (-12.5, 30.25, 7.75)
    return affine


def _volume(channels: int = 1, seed: int = 0) -> MetaTensor:
    gen = torch.Generator().manual_seed(seed)
    data = torch.randn((channels, *SHAPE), generator=gen) * 100.0
    return MetaTensor(data, affine=torch.as_tensor(_oblique_affine()))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mha", ".nrrd"])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_keeps_affine_shape_values(tmp_path, suffix, channels):
    volume = _volume(channels)
    path = write_volume(volume, tmp_path / f"vol{suffix}")
    back = read_volume(path)
    assert isinstance(back, MetaTensor) and back.dtype == torch.float32
    assert tuple(back.shape) == (channels, *SHAPE)
    np.testing.assert_allclose(back.affine.numpy(), _oblique_affine(), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(back.pixdim.numpy(), [0.7, 1.3, 2.5], rtol=1e-6)
    torch.testing.assert_close(back.as_tensor(), volume.as_tensor())
    assert back.meta["filename_or_obj"] == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


def test_nifti_written_matches_nibabel(tmp_path):
    path = write_volume(_volume(), tmp_path / "vol.nii.gz")
    img = nib.load(path)
    np.testing.assert_allclose(img.affine, _oblique_affine(), atol=1e-5)
    assert img.header.get_xyzt_units()[0] == "mm"
    assert img.shape == SHAPE


def test_mha_geometry_is_lps(tmp_path):
    """SimpleITK sees the RAS affine as LPS: x and y of origin and direction rows negated."""
    path = write_volume(_volume(), tmp_path / "vol.mha")
    img = sitk.ReadImage(str(path))
    ras = _oblique_affine()
    flip = np.diag([-1.0, -1.0, 1.0])
    spacing = np.array([0.7, 1.3, 2.5])
    assert img.GetSize() == SHAPE
    np.testing.assert_allclose(img.GetOrigin(), flip @ ras[:3, 3], atol=1e-5)
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-6)
    expected_direction = flip @ ras[:3, :3] / spacing
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), expected_direction, atol=1e-6)
    # index (i, j, k) -> the RAS point of the affine, with x, y negated (LPS)
    point = np.array(img.TransformIndexToPhysicalPoint((1, 2, 3)))
    np.testing.assert_allclose(point, flip @ (ras @ [1, 2, 3, 1])[:3], atol=1e-5)
    # SimpleITK's array is (z, y, x): voxel (x=1, y=2, z=3)
    assert sitk.GetArrayFromImage(img)[3, 2, 1] == pytest.approx(float(_volume()[0, 1, 2, 3]))


def test_itk_file_read_gives_ras_affine(tmp_path):
    """A .mha written by SimpleITK alone reads back with the RAS affine MONAI's ITKReader gives."""
    arr = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE[::-1])  # (z, y, x)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.5, 0.75, 2.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(img, str(tmp_path / "itk.mha"))
    volume = read_volume(tmp_path / "itk.mha")
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.array(
        [[0.0, 0.75, 0.0, 10.0], [-0.5, 0.0, 0.0, -20.0], [0.0, 0.0, 2.0, 30.0], [0.0, 0.0, 0.0, 1.0]]
    )
    np.testing.assert_allclose(volume.affine.numpy(), expected, atol=1e-9)
    assert tuple(volume.shape) == (1, *SHAPE)
    assert volume[0, 1, 2, 3] == arr[3, 2, 1]


def test_four_d_nifti_gives_channels(tmp_path):
    data = np.random.default_rng(0).normal(size=(*SHAPE, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, _oblique_affine()), tmp_path / "4d.nii.gz")
    volume = read_volume(tmp_path / "4d.nii.gz")
    assert tuple(volume.shape) == (2, *SHAPE)
    np.testing.assert_array_equal(volume[1].numpy(), data[..., 1])


def test_labels_are_written_as_integers(tmp_path):
    labels = MetaTensor(torch.randint(0, 4, (1, *SHAPE)).float(), affine=torch.as_tensor(_oblique_affine()))
    nii = write_volume(labels, tmp_path / "seg.nii.gz", label=True)
    mha = write_volume(labels, tmp_path / "seg.mha", label=True)
    assert nib.load(nii).get_data_dtype() == np.uint8
    assert sitk.ReadImage(str(mha)).GetPixelID() == sitk.sitkUInt8
    torch.testing.assert_close(read_volume(nii).as_tensor(), labels.as_tensor())
    big = write_volume(labels * 1000 - 2000, tmp_path / "big.nii", label=True)
    assert nib.load(big).get_data_dtype() == np.int16
    with pytest.raises(ValueError, match="non-integer"):
        write_volume(labels + 0.4, tmp_path / "bad.nii.gz", label=True)


def test_plain_tensor_needs_affine(tmp_path):
    data = torch.rand(1, *SHAPE)
    with pytest.raises(ValueError, match="affine="):
        write_volume(data, tmp_path / "a.nii.gz")
    path = write_volume(data, tmp_path / "a.nii.gz", affine=_oblique_affine())
    np.testing.assert_allclose(read_volume(path).affine.numpy(), _oblique_affine(), atol=1e-5)


def test_write_rejects_bad_shape_suffix_and_sheared_itk(tmp_path):
    with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
        write_volume(torch.rand(*SHAPE), tmp_path / "a.nii.gz", affine=np.eye(4))
    with pytest.raises(UnsupportedFormatError, match="a.png"):
        write_volume(torch.rand(1, *SHAPE), tmp_path / "a.png", affine=np.eye(4))
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(ValueError, match="sheared"):
        write_volume(torch.rand(1, *SHAPE), tmp_path / "a.mha", affine=sheared)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_partial(tmp_path, monkeypatch):
    path = write_volume(_volume(seed=1), tmp_path / "vol.nii.gz")
    before = path.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_volume(_volume(seed=2), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["vol.nii.gz"]


def test_dicom_series_folder(tmp_path):
    arr = np.random.default_rng(0).integers(-1000, 1000, size=(5, 7, 6))  # (z, y, x)
    rot = _rotation((0.0, 0.0, 0.4))
    spacing, origin = (0.8, 0.9, 2.0), (-50.0, 20.0, 15.0)
    uid = "1.2.826.0.1.3680043.2.1125.1.1001"
    write_dicom_series(tmp_path / "ct", arr, uid, spacing, origin, rot.ravel().tolist())
    volume = read_volume(tmp_path / "ct")
    assert tuple(volume.shape) == (1, 6, 7, 5)
    np.testing.assert_array_equal(volume[0].numpy(), arr.T)
    expected = np.eye(4)
    expected[:3, :3] = rot @ np.diag(spacing)
    expected[:3, 3] = origin
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ expected  # LPS -> RAS
    np.testing.assert_allclose(volume.affine.numpy(), expected, atol=1e-4)


def test_dicom_folder_with_two_series_asks_for_one(tmp_path):
    arr = np.zeros((3, 4, 5))
    uids = ["1.2.826.0.1.3680043.2.1125.1.2001", "1.2.826.0.1.3680043.2.1125.1.2002"]
    for uid in uids:
        write_dicom_series(tmp_path / "mixed", arr, uid, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel().tolist())
    with pytest.raises(VolumeError, match="series_uid"):
        read_volume(tmp_path / "mixed")
    assert tuple(read_volume(tmp_path / "mixed", series_uid=uids[1]).shape) == (1, 5, 4, 3)


def test_missing_file(tmp_path):
    with pytest.raises(VolumeNotFoundError, match="nope.nii.gz"):
        read_volume(tmp_path / "nope.nii.gz")
    with pytest.raises(FileNotFoundError):
        read_volume(tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii", "garbage.mha"])
def test_garbage_bytes_are_unreadable(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(UnreadableVolumeError, match=name):
        read_volume(tmp_path / name)


def test_unsupported_suffix_and_empty_folder(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    with pytest.raises(UnsupportedFormatError, match="scan.png"):
        read_volume(tmp_path / "scan.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnreadableVolumeError, match="no DICOM series"):
        read_volume(tmp_path / "empty")


def test_2d_image_where_3d_expected(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((8, 9), np.float32), np.eye(4)), tmp_path / "slice.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((9, 8), np.float32)), str(tmp_path / "slice.mha"))
    for name in ("slice.nii.gz", "slice.mha"):
        with pytest.raises(NotA3DVolumeError, match=name):
            read_volume(tmp_path / name)
        assert tuple(read_volume(tmp_path / name, expect_3d=False).shape) == (1, 8, 9)


def test_check_same_geometry(tmp_path):
    image, label = _volume(), _volume(seed=3)
    check_same_geometry(image, label)
    nudged = label.clone()
    nudged.affine = label.affine + 1e-6
    check_same_geometry(image, nudged)
    shifted = label.clone()
    shifted.affine = label.affine.clone()
    shifted.affine[0, 3] += 0.5
    with pytest.raises(GeometryMismatchError, match="ct.*seg.*affine"):
        check_same_geometry(image, shifted, names=("ct", "seg"))
    cropped = MetaTensor(label.as_tensor()[:, :-1], affine=label.affine)
    with pytest.raises(GeometryMismatchError, match=r"image and label differ in spatial shape: \(8, 9, 10\) vs \(7, "):
        check_same_geometry(image, cropped)
    write_volume(image, tmp_path / "img.nii.gz")
    write_volume(shifted, tmp_path / "seg.nii.gz")
    with pytest.raises(GeometryMismatchError, match="img.nii.gz.*seg.nii.gz"):
        check_same_geometry(read_volume(tmp_path / "img.nii.gz"), read_volume(tmp_path / "seg.nii.gz"))


def test_real_volume_anatomical():
    path = SHARED_VOLUMES / "nibabel_5.4.2" / "anatomical.nii"
    if not path.is_file():
        pytest.skip(f"shared test volume not found at {path} (clone with ../shared beside the repo)")
    volume = read_volume(path)
    assert tuple(volume.shape) == (1, 33, 41, 25)
    img = nib.load(path)
    np.testing.assert_allclose(volume.affine.numpy(), img.affine, atol=1e-6)
    np.testing.assert_allclose(volume[0].numpy(), np.asarray(img.dataobj, dtype=np.float32))


# ---- intensity normalisation ---------------------------------------------------------


def test_percentile_normalisation_inverts_exactly_without_clipping():
    x = _volume(channels=2) + 300.0
    norm = IntensityNormalization(percentiles=(0.5, 99.5), clip=False).fit(x)
    values = x.numpy().ravel()
    assert norm.low == pytest.approx(np.percentile(values, 0.5))
    assert norm.high == pytest.approx(np.percentile(values, 99.5))
    y = norm(x)
    assert isinstance(y, MetaTensor) and y.dtype == torch.float32
    assert (y < -1).any() and (y > 1).any()  # 1 % of voxels lie outside the percentiles
    inside = (x >= norm.low) & (x <= norm.high)
    assert y[inside].min() >= -1 - 1e-6 and y[inside].max() <= 1 + 1e-6
    torch.testing.assert_close(norm.inverse(y).as_tensor(), x.as_tensor(), rtol=1e-5, atol=1e-3)


def test_clipping_inverts_where_unclipped():
    x = _volume()
    norm = IntensityNormalization(percentiles=(5.0, 95.0)).fit(x)
    y = norm(x)
    assert y.min() == -1.0 and y.max() == 1.0
    inside = (x > norm.low) & (x < norm.high)
    torch.testing.assert_close(norm.inverse(y)[inside], x[inside], rtol=1e-5, atol=1e-3)
    assert torch.allclose(norm.inverse(y)[x >= norm.high], torch.tensor(norm.high))


def test_window_mode_on_ct_values():
    hu = torch.tensor([-3024.0, -1000.0, -500.0, 0.0, 40.0, 1000.0, 3071.0])
    norm = IntensityNormalization(mode="window", window=(-1000, 1000))
    assert (norm.low, norm.high) == (-1000.0, 1000.0)
    assert norm.fit(hu * 7) is norm and norm.low == -1000.0  # a window is not refitted
    torch.testing.assert_close(norm(hu), torch.tensor([-1.0, -1.0, -0.5, 0.0, 0.04, 1.0, 1.0]))
    unit = IntensityNormalization(mode="window", window=(-1000, 1000), out_range=(0, 1), clip=False)
    torch.testing.assert_close(unit(hu[1:6]), torch.tensor([0.0, 0.25, 0.5, 0.52, 1.0]))
    torch.testing.assert_close(unit.inverse(unit(hu)), hu, rtol=1e-6, atol=1e-3)


def test_to_dict_round_trip_through_json():
    norm = IntensityNormalization(percentiles=(1, 99), out_range=(0, 1)).fit(_volume())
    stored = json.loads(json.dumps(norm.to_dict()))
    again = IntensityNormalization.from_dict(stored)
    assert again == norm
    x = _volume(seed=5)
    torch.testing.assert_close(again(x), norm(x))
    window = IntensityNormalization(mode="window", window=(-160, 240))
    assert IntensityNormalization.from_dict(json.loads(json.dumps(window.to_dict()))) == window


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"mode": "zscore"}, "zscore"),
        ({"percentiles": (99.5, 0.5)}, "99.5"),
        ({"percentiles": (-1, 50)}, "-1"),
        ({"mode": "window"}, "window="),
        ({"mode": "window", "window": (1000, -1000)}, "1000"),
        ({"window": (-1000, 1000)}, "only with mode='window'"),
        ({"out_range": (1, -1)}, "out_range"),
        ({"percentiles": "low"}, "'low'"),
    ],
)
def test_bad_options_raise_naming_the_value(kwargs, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        IntensityNormalization(**kwargs)


def test_normalisation_misuse():
    with pytest.raises(RuntimeError, match="fit"):
        IntensityNormalization()(torch.zeros(3))
    with pytest.raises(ValueError, match="constant"):
        IntensityNormalization().fit(torch.full((1, *SHAPE), 7.0))
    with pytest.raises(ValueError, match="NaN"):
        IntensityNormalization().fit(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="shift"):
        IntensityNormalization.from_dict({"mode": "percentile", "shift": 3})
