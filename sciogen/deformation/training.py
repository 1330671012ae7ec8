"""Training images: volumes (3D) or 2D images and slices of volumes (2D) on the network grid,
intensities in [0, 1].

The files come from ``data.root`` + ``data.files`` (a recipe, or ``--data`` through
:meth:`~sciogen.deformation.DeformationGenerator.own_data_config`), or, with ``root: null``,
from the dataset registry's cache. Files that cannot be used (unreadable, empty, no
matching label map, ...) are recorded in a :class:`~sciogen.data.records.RecordLog` with
their position in the list of files and the reason; a mix of 2D images and 3D volumes, or
2D images for a 3D model, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from sciogen.data.records import RecordLog, expand_paths
from sciogen.imaging.grid import GridMap, normalize_intensity
from sciogen.imaging.io import ImageError, UnreadableImageError

from .config import DeformationDataConfig
from .io import IMAGE_SUFFIXES, MIN_SIDE, read_image

__all__ = ["IMAGE_SUFFIXES", "TrainingSet", "resolve_files", "registry_files", "match_labels", "read_training_image",
           "load_training_set", "training_images", "volume_slices", "brain_phantom"]

#: suffixes of label-map file stems that still match the image (``case1_seg.nii.gz`` -> ``case1``)
LABEL_TAILS = ("_seg", "_segmentation", "_label", "_labels", "_labelmap", "_mask")


def _file_part(name: str) -> str:
    """``"a/b.npz:vol"`` -> ``"a/b.npz"``."""
    return name.split(".npz:")[0] + ".npz" if ".npz:" in name else name


def resolve_files(config: DeformationDataConfig, log: RecordLog | None = None, download: bool = False) -> list[str]:
    """The configured files as paths (``root`` joined, ``~`` expanded); raises if one is missing.

    ``root: None`` takes them from the dataset registry (:func:`registry_files`).
    """
    if config.root is None:
        return registry_files(config.files, log, download=download)
    root = Path(config.root).expanduser()
    out = []
    for name in config.files:
        path = str(root / name) if not Path(_file_part(name)).is_absolute() else name
        if not Path(_file_part(path)).is_file():
            raise FileNotFoundError(
                f"training file {path} not found; set data.root (now {config.root!r}) to the folder holding "
                f"the images, list other files in data.files, or train on your own images with --data FOLDER"
            )
        out.append(path)
    return out


def registry_files(names: Sequence[str], log: RecordLog | None = None, download: bool = False) -> list[str]:
    """The files of ``names`` that a registered dataset provides, from the cache (``$SCIOGEN_CACHE``).

    A name is matched by its file name (``nilearn_0.14.1/mni_icbm152_t1_...nii.gz`` -> dataset
    ``mni152_2009``). Names no dataset provides are recorded in ``log`` (index: position in
    ``names``). ``download``: fetch missing files (checksummed); otherwise a missing cache copy
    is a FileNotFoundError saying how to get it.
    """
    from sciogen.data import cache_dir, cards, fetch

    log = RecordLog() if log is None else log
    by_file = {f.name: card.name for card in cards().values() for f in card.files}
    found: list[tuple[str, str]] = []
    for index, name in enumerate(names):
        base = Path(_file_part(name)).name
        if base in by_file:
            found.append((by_file[base], base))
        else:
            log.skip(name, index, "not in the dataset registry (data.root is null); set data.root to a folder "
                                  "holding it, or train on your own images with --data FOLDER")
    if not found:
        raise FileNotFoundError(
            f"none of data.files ({', '.join(names)}) is provided by a registered dataset; set data.root to the "
            "folder holding them, or train on your own images with --data FOLDER"
        )
    out = []
    for dataset in dict.fromkeys(d for d, _ in found):
        wanted = [f for d, f in found if d == dataset]
        folder = cache_dir() / dataset
        if download:
            folder = fetch(dataset, files=wanted)
        elif not all((folder / f).is_file() for f in wanted):
            raise FileNotFoundError(
                f"the dataset registry's {dataset!r} ({', '.join(wanted)}) is not in the cache {folder}; add "
                f"--download to fetch it (checksummed; from Python: download=True or sciogen.data.fetch({dataset!r})), "
                "or use your own images (--data FOLDER to train, --reference FOLDER to evaluate)"
            )
        else:
            fetch(dataset, path=folder, files=wanted)  # checks the cached copy against the card
        out += [str(folder / f) for f in wanted]
    return out


def _stem(path: str | Path) -> str:
    name = Path(_file_part(str(path))).name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def match_labels(files: Sequence[str], folder: str | Path, root: str | Path | None = None) -> dict[str, Path | str]:
    """For each image file, its label map in ``folder``, or the reason there is none.

    A label map matches an image when it has the same path relative to ``folder`` as the
    image relative to ``root`` (suffix aside), or else the same file stem anywhere in
    ``folder`` (``case1.nii.gz``, ``case1.png``, ``case1_seg.nii.gz``, ... all match ``case1``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"--labels {folder}: no such folder")
    candidates = expand_paths(folder, IMAGE_SUFFIXES, "label maps")
    by_key: dict[str, list[Path]] = {}
    for c in candidates:
        stem = _stem(c)
        for tail in LABEL_TAILS:
            if stem.lower().endswith(tail) and len(stem) > len(tail):
                stem = stem[: -len(tail)]
                break
        relative = c.parent.relative_to(folder) / stem
        by_key.setdefault(str(relative), []).append(c)
        by_key.setdefault(stem, []).append(c)
    out: dict[str, Path | str] = {}
    for f in files:
        path = Path(_file_part(f))
        keys = []
        if root is not None and path.is_relative_to(Path(root).expanduser()):
            keys.append(str(path.parent.relative_to(Path(root).expanduser()) / _stem(path)))
        keys.append(_stem(path))
        for key in keys:
            hits = sorted(set(by_key.get(key, [])))
            if len(hits) == 1:
                out[f] = hits[0]
                break
            if len(hits) > 1:
                out[f] = f"several label maps match it in {folder}: {', '.join(h.name for h in hits[:3])}"
                break
        else:
            out[f] = f"no label map named {_stem(path)}.* (or {_stem(path)}_seg.* ...) in {folder}"
    return out


def read_training_image(path: str | Path) -> torch.Tensor:
    """One image as ``(C, *S)`` float32 with singleton spatial axes removed (a ``(X, Y, 1)`` NIfTI
    is 2D), checked: raises ValueError naming what is wrong (empty, too small, NaN, constant)."""
    image, _ = read_image(path, geometry=False)  # training needs the voxels only
    if image.numel() == 0:
        raise ValueError(f"empty image (array shape {tuple(image.shape)})")
    spatial = [n for n in image.shape[1:] if n > 1]
    if len(spatial) < 2:
        raise ValueError(f"not a 2D image or 3D volume (array shape {tuple(image.shape)})")
    image = image.reshape(image.shape[0], *spatial)
    if min(spatial) < MIN_SIDE:
        raise ValueError(f"too small: spatial shape {tuple(spatial)} (at least {MIN_SIDE} voxels per side)")
    if not bool(torch.isfinite(image).all()):
        raise ValueError("NaN or infinite intensities")
    if float(image[0].max()) == float(image[0].min()):
        raise ValueError(f"constant intensity {float(image[0].max()):g} (an empty image)")
    return image


def volume_slices(volume: torch.Tensor, axes: Sequence[int], fraction: float) -> list[torch.Tensor]:
    """Slices ``(C, a, b)`` of ``volume`` ``(C, X, Y, Z)`` along ``axes`` from the central ``fraction``."""
    out = []
    for axis in axes:
        n = volume.shape[1 + axis]
        lo = int(round(n * (1 - fraction) / 2))
        for i in range(lo, max(lo + 1, n - lo)):
            out.append(volume.select(1 + axis, i))
    return out


@dataclass
class TrainingSet:
    """What :func:`load_training_set` found.

    Attributes:
        images: ``(N, C, *shape)`` float32 on the network grid: channel 0 the image in [0, 1],
            channel 1 (with labels) the labelled region (0 / 1).
        files: the files used; ``dims``: 2 (images) or 3 (volumes), what they hold.
        dropped_slices: slices of volumes left out by ``data.min_foreground``.
    """

    images: torch.Tensor
    files: list[str]
    dims: int
    dropped_slices: int = 0

    def describe(self, config: DeformationDataConfig) -> str:
        """One line for the training log."""
        grid = "x".join(map(str, config.shape))
        labels = " with label maps" if self.images.shape[1] == 2 else ""
        if config.spatial_dims == 3:
            return f"training on {len(self.files)} volumes{labels} on a {grid} grid"
        if self.dims == 2:
            return f"training on {len(self.files)} 2D images{labels} on a {grid} grid"
        return (f"training a 2D model on {self.images.shape[0]} slices of {len(self.files)} volumes{labels} "
                f"(central {config.slice_fraction:g} of axes {config.slice_axes}; {self.dropped_slices} nearly empty "
                f"slices left out by data.min_foreground={config.min_foreground:g}) on a {grid} grid; for a 3D "
                "model train the recipe deformation/brain_mri_3d")


def load_training_set(config: DeformationDataConfig, files: Sequence[str] | None = None,
                      log: RecordLog | None = None) -> TrainingSet:
    """The training images of ``config`` (or of ``files``) on the network grid.

    3D: one item per volume. 2D: each 2D image, and the slices of each volume along
    ``slice_axes`` (central ``slice_fraction``, nearly empty ones dropped). Each image is
    normalised to [0, 1], padded to a square / cube and resampled to ``config.shape``.
    Unusable files go to ``log`` (index: position in the file list). Raises ValueError for a
    mix of 2D images and 3D volumes, for 2D images with ``spatial_dims: 3``, and when no
    image is left.
    """
    log = RecordLog() if log is None else log
    files = resolve_files(config, log) if files is None else [str(f) for f in files]
    labels = match_labels(files, config.labels, config.root) if config.labels else {}
    items: list[torch.Tensor] = []
    kinds: dict[int, list[str]] = {2: [], 3: []}
    dropped = 0
    for index, path in enumerate(files):
        try:
            image = read_training_image(path)[:1]
            mask = _label_mask(path, labels[path], image.shape[1:]) if config.labels else None
        except Exception as err:  # noqa: BLE001 - every unreadable file is reported with its reason
            log.skip(path, index, _reason(err, path))
            continue
        dims = image.ndim - 1
        kinds[dims].append(path)
        if dims == 2 and config.spatial_dims == 3:
            continue  # refused below, with the list
        image = normalize_intensity(image[None])[0]
        parts = [(image, mask)] if dims == config.spatial_dims else list(zip(
            volume_slices(image, config.slice_axes, config.slice_fraction),
            volume_slices(mask, config.slice_axes, config.slice_fraction) if mask is not None else _nones()))
        kept = 0
        for part, mask_part in parts:
            grid = GridMap.for_image(part.shape[1:], config.shape)
            x = grid.to_network(part[None])
            if dims == 3 and config.spatial_dims == 2 and float(x.mean()) < config.min_foreground:
                dropped += 1
                continue
            if mask_part is not None:
                x = torch.cat([x, (grid.to_network(mask_part[None]) > 0.5).float()], 1)
            items.append(x)
            kept += 1
        if kept == 0:
            log.skip(path, index, f"no slice has a mean intensity above data.min_foreground={config.min_foreground:g}")
            kinds[dims].remove(path)
    _check_dims(kinds, config.spatial_dims)
    log.kept = len(kinds[2]) + len(kinds[3])
    log.require(1, "deformation training images")
    return TrainingSet(torch.cat(items).float(), kinds[2] + kinds[3], 2 if kinds[2] else 3, dropped)


def training_images(config: DeformationDataConfig, files: Sequence[str] | None = None,
                    log: RecordLog | None = None) -> torch.Tensor:
    """All training images on the network grid, ``(N, C, *config.shape)`` float32 in [0, 1]
    (C = 2 with ``config.labels``; see :func:`load_training_set`)."""
    return load_training_set(config, files, log).images


def _nones():
    while True:
        yield None


def _reason(err: Exception, path: str) -> str:
    """Why ``path`` was left out: our own checks as they are, a reader's error with its type."""
    if isinstance(err, UnreadableImageError) and err.__cause__ is not None:  # the reader's own error
        err = err.__cause__
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    for name in (_file_part(path), path):
        text = text.replace(f"{name}: ", "").replace(name, Path(_file_part(path)).name)
    text = text.strip() or type(err).__name__
    if type(err) is ValueError or isinstance(err, ImageError):
        return text
    return f"cannot read it ({type(err).__name__}: {text})"


def _label_mask(path: str, label: Path | str, shape: Sequence[int]) -> torch.Tensor:
    """The labelled region ``(1, *shape)`` (label > 0) of the label map matched to ``path``."""
    if isinstance(label, str):
        raise ValueError(label)
    try:
        lab = read_training_image(label)[:1]
    except ValueError as err:
        raise ValueError(f"label map {label}: {err}") from None
    if tuple(lab.shape[1:]) != tuple(shape):
        raise ValueError(f"label map {label} has spatial shape {tuple(lab.shape[1:])}, the image {tuple(shape)}")
    return (lab > 0).float()


def _check_dims(kinds: dict[int, list[str]], spatial_dims: int) -> None:
    def some(paths):
        return ", ".join(Path(_file_part(p)).name for p in paths[:3]) + (", ..." if len(paths) > 3 else "")

    if kinds[2] and kinds[3]:
        raise ValueError(
            f"the images mix {len(kinds[2])} 2D images ({some(kinds[2])}) and {len(kinds[3])} 3D volumes "
            f"({some(kinds[3])}); train on one kind at a time (a 2D model: sciogen train deformation --data "
            "FOLDER; a 3D model: sciogen train deformation/brain_mri_3d --data FOLDER)"
        )
    if kinds[2] and spatial_dims == 3:
        raise ValueError(
            f"a 3D model (data.spatial_dims=3) trains on 3D volumes, but the images are 2D ({some(kinds[2])}); "
            "train a 2D model: sciogen train deformation --data FOLDER"
        )


def brain_phantom(shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic head for demos and tests: ``(image (1, *shape) in [0, 1], labels (1, *shape))``.

    Labels: 0 background, 1 scalp, 2 grey matter, 3 white matter, 4 ventricles. Works in
    2D and 3D; no data files needed.
    """
    axes = [torch.linspace(-1, 1, n) for n in shape]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"))

    def ellipsoid(radii, centre=None):
        centre = centre or [0.0] * len(shape)
        return sum(((pos[i] - centre[i]) / radii[i]) ** 2 for i in range(len(shape))) <= 1

    d = len(shape)
    label = torch.zeros(shape, dtype=torch.int64)
    label[ellipsoid([0.92, 0.78, 0.85][:d])] = 1
    label[ellipsoid([0.82, 0.68, 0.75][:d])] = 2
    label[ellipsoid([0.62, 0.5, 0.55][:d])] = 3
    for side in (-1, 1):
        centre = [0.1, 0.16 * side, 0.0][:d]
        label[ellipsoid([0.3, 0.08, 0.12][:d], centre)] = 4
    intensity = torch.tensor([0.0, 0.35, 0.6, 0.9, 0.15])
    ripple = 0.05 * torch.sin(9 * pos[0]) * torch.cos(7 * pos[1])
    image = (intensity[label] + ripple * (label > 0)).clamp(0, 1)
    return image[None], label[None]
