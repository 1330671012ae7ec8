"""The shared imaging layer (sciogen.imaging): one reader for every format the imaging domains
read, one warp in both unit conventions, one intensity normalisation, the grid maps, and
imports that stay light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sciogen.imaging.grid import GridMap, IntensityNormalization, normalize_intensity
from sciogen.imaging.spatial import identity_grid, normalized_centres, warp


def test_import_stays_light():
    code = ("import sys, sciogen.imaging, sciogen.imaging.spatial, sciogen.imaging.grid, sciogen.imaging.io, "
            "sciogen.deformation\n"
            "print([m for m in ('monai', 'nibabel', 'SimpleITK') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("shape", [(9, 12), (7, 8, 6)])
def test_warp_identity_and_units_agree(shape):
    g = torch.Generator().manual_seed(0)
    d = len(shape)
    x = torch.rand(2, 3, *shape, generator=g)
    zero = torch.zeros(1, d, *shape)
    for units in ("voxels", "normalized"):
        for align in (True, False):
            assert torch.allclose(warp(x, zero, units=units, align_corners=align), x, atol=1e-5)
    # one voxel along the last axis is 2 / (n - 1) normalised units with align_corners=True, 2 / n without
    u = torch.randn(2, d, *shape, generator=g)
    n = torch.tensor(shape, dtype=torch.float32).view(1, -1, *[1] * d)
    vox = warp(x, u, units="voxels", align_corners=True)
    assert torch.allclose(warp(x, u * 2 / (n - 1), units="normalized", align_corners=True), vox, atol=1e-5)
    vox = warp(x, u, units="voxels", align_corners=False)
    assert torch.allclose(warp(x, u * 2 / n, units="normalized", align_corners=False), vox, atol=1e-5)
    # a whole-voxel shift inside the image moves the content exactly, in both conventions
    shift = torch.zeros(1, d, *shape)
    shift[:, -1] = 1.0
    for align in (True, False):
        moved = warp(x, shift, units="voxels", align_corners=align)
        assert torch.allclose(moved[..., :-1], x[..., 1:], atol=1e-5)


def test_warp_matches_the_normalized_formula_of_the_longitudinal_set():
    """The longitudinal set samples I(p - u(p)) on voxel centres -1 + (2k + 1) / n
    (align_corners=False): the same numbers as a direct grid_sample of that formula."""
    g = torch.Generator().manual_seed(1)
    volume = torch.rand(2, 1, 10, 12, 8, generator=g)
    u = 0.1 * torch.randn(2, 3, 10, 12, 8, generator=g)
    p = normalized_centres((10, 12, 8))[None]
    where = (p - u).permute(0, 2, 3, 4, 1).flip(-1)
    expected = torch.nn.functional.grid_sample(volume, where, mode="bilinear", padding_mode="border",
                                               align_corners=False)
    assert torch.equal(warp(volume, -u, units="normalized", align_corners=False), expected)


def test_warp_errors_name_the_option():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="units"):
        warp(x, torch.zeros(1, 2, 8, 8), units="mm")
    with pytest.raises(ValueError, match="ddf must have shape"):
        warp(x, torch.zeros(1, 3, 8, 8))


def test_normalize_intensity_is_the_nearest_rank_normalization():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 11, 13, generator=g) * 40 + 7
    out = normalize_intensity(x, 99.5)
    flat = x.flatten(1)
    k = max(1, round(flat.shape[1] * 0.995))
    lo, hi = flat.min(1).values, flat.kthvalue(k, dim=1).values
    expected = ((x - lo.view(-1, 1, 1, 1)) / (hi - lo).view(-1, 1, 1, 1)).clamp(0, 1)
    assert torch.equal(out, expected)
    assert torch.equal(normalize_intensity(torch.full((1, 1, 4, 4), 3.0)), torch.zeros(1, 1, 4, 4))
    norm = IntensityNormalization(percentiles=(0.0, 100.0), out_range=(0.0, 1.0), rank="nearest").fit(x[0])
    assert (norm.low, norm.high) == (float(x[0].min()), float(x[0].max()))
    with pytest.raises(ValueError, match="rank="):
        IntensityNormalization(rank="cubic")
    with pytest.raises(ValueError, match="constant volume"):
        IntensityNormalization().fit(torch.ones(5))


def test_grid_map_pads_with_the_minimum_and_maps_fields_back():
    grid = GridMap.for_image((6, 10), (16, 16))
    image = torch.arange(60, dtype=torch.float32).view(1, 1, 6, 10) + 5.0
    net = grid.to_network(image)
    assert net.shape == (1, 1, 16, 16) and float(net[0, 0, 0, 0]) == 5.0  # the padded corner: the minimum
    shift = torch.zeros(1, 2, 16, 16)
    shift[:, 1] = 3.0
    assert torch.allclose(grid.to_image(shift)[:, 1], torch.full((1, 6, 10), 3.0 / grid.ratio))
    with pytest.raises(ValueError, match="2D image cannot use a 3D model"):
        GridMap.for_image((6, 10), (8, 8, 8))
    assert torch.equal(identity_grid((2, 3))[1], torch.tensor([[0.0, 1, 2], [0, 1, 2]]))


import nibabel as nib  # noqa: E402
import SimpleITK as sitk  # noqa: E402

from sciogen.imaging.io import (  # noqa: E402
    ImageNotFoundError,
    SingularAffineError,
    UnreadableImageError,
    UnsupportedFormatError,
    check_affine,
    plain_tensor,
    read_image,
)


def test_one_reader_for_nifti_itk_raster_and_arrays(tmp_path):
    rng = np.random.RandomState(0)
    vol = rng.rand(5, 6, 7).astype(np.float32)
    affine = np.diag([2.0, 1.5, 1.0, 1.0])
    affine[:3, 3] = [4.0, -3.0, 2.0]
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "v.nii.gz")
    img = read_image(tmp_path / "v.nii.gz")
    assert img.shape == (1, 5, 6, 7) and np.allclose(img.affine.numpy(), affine)
    assert torch.equal(plain_tensor(img)[0], torch.from_numpy(vol)) and type(plain_tensor(img)) is torch.Tensor
    # a 2D ITK image: ITK's LPS origin and spacing become a 3x3 RAS affine
    s2 = sitk.GetImageFromArray(rng.rand(4, 9).astype(np.float32))
    s2.SetSpacing((0.5, 2.0))
    s2.SetOrigin((1.0, 2.0))
    sitk.WriteImage(s2, str(tmp_path / "s.nrrd"))
    img = read_image(tmp_path / "s.nrrd")
    assert img.shape == (1, 9, 4)
    assert np.allclose(img.affine.numpy(), [[-0.5, 0, -1.0], [0, -2.0, -2.0], [0, 0, 1]])
    # colour PNG: channels first
    rgb = (rng.rand(6, 8, 3) * 255).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    assert read_image(tmp_path / "c.png").shape == (3, 8, 6)
    np.savez(tmp_path / "a.npz", one=vol)
    assert torch.equal(read_image(tmp_path / "a.npz").as_tensor()[0], torch.from_numpy(vol))
    assert torch.equal(read_image(f"{tmp_path / 'a.npz'}:one", channel_first=True).as_tensor(), torch.from_numpy(vol))


def test_reader_errors_name_the_file(tmp_path):
    with pytest.raises(ImageNotFoundError, match="nothing.nii: no such image"):
        read_image(tmp_path / "nothing.nii")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnsupportedFormatError, match="notes.txt: unsupported image type '.txt'"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(UnreadableImageError, match="broken.nii.gz: cannot read it as an image") as info:
        read_image(tmp_path / "broken.nii.gz")
    assert info.value.__cause__ is not None
    with pytest.raises(UnsupportedFormatError, match="use .nii, .nii.gz"):
        read_image(tmp_path / "notes.txt", formats=(".nii", ".nii.gz"), what="volume")
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)  # an all-zero sform, as some converters write
    img.header["sform_code"], img.header["qform_code"] = 1, 0
    for row in ("srow_x", "srow_y", "srow_z"):
        img.header[row] = 0.0
    nib.save(img, str(tmp_path / "singular.nii.gz"))
    with pytest.raises(SingularAffineError, match="singular.nii.gz: the voxel-to-world affine is singular"):
        read_image(tmp_path / "singular.nii.gz")
    assert read_image(tmp_path / "singular.nii.gz", check_geometry=False).shape == (1, 4, 4, 4)
    with pytest.raises(SingularAffineError, match="not 3x3"):
        check_affine(np.eye(4), "x", spatial_dims=2)
