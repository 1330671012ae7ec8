"""Training volumes on the network grid (:class:`~sciogen.imaging.grid.NetworkGrid`), read from
the configured files, the dataset registry's cache or a user's records, and their augmentation.

Unusable volumes are reported with file, index and reason (:func:`records_on_grid`). Training-time
augmentation (:func:`augment_batch`) is random mirroring, a small random rotation and zoom (one
``affine_grid`` resampling) and a random gamma, all drawn from the trainer's generator so a run
is reproducible.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from sciogen.data.records import RecordLog
from sciogen.imaging.grid import NetworkGrid
from sciogen.imaging.io import read_image

from .config import VolumeDataConfig
from .io import NotA3DVolumeError, VolumeError, VolumeNotFoundError, check_same_geometry, read_volume

__all__ = ["resolve_files", "registry_file", "load_volume", "axcodes_affine", "training_volumes", "records_on_grid",
           "augment_batch"]


def resolve_files(config: VolumeDataConfig, log: RecordLog | None = None, download: bool = False) -> list[str]:
    """The configured files as paths (``root`` joined, ``~`` expanded); raises if one is missing.

    ``root: null`` takes each file from the dataset registry's copy (:func:`registry_file`;
    ``download``: fetch what the cache lacks, checksummed); a file no dataset card lists is
    reported in ``log`` and left out (without ``log`` it raises).
    """
    if config.root is None:
        out = []
        for i, name in enumerate(config.files):
            found = registry_file(name, download)
            if found is None:
                reason = ("not in the dataset registry (sciogen list shows its datasets); set data.root to a folder "
                          "holding it, or train on your own volumes with --data FOLDER")
                if log is None:
                    raise VolumeNotFoundError(f"{name}: {reason}")
                log.skip(name, i, reason)
            else:
                out.append(found)
        return out
    root = Path(config.root).expanduser()
    out = []
    for name in config.files:
        file, _, key = name.partition(".npz:")
        file = file + ".npz" if key else file
        path = Path(file) if Path(file).is_absolute() else root / file
        if not path.is_file():
            raise VolumeNotFoundError(
                f"training volume {path} not found; set data.root (now {config.root!r}) to the folder holding the "
                "volumes, list other files in data.files, or train on your own volumes with --data FOLDER"
            )
        out.append(f"{path}:{key}" if key else str(path))
    return out


def registry_file(name: str, download: bool = False) -> str | None:
    """The path of ``name`` (matched by file name) in the dataset registry's copy, or None
    when no volumes dataset card lists it.

    The copy is ``$SCIOGEN_CACHE/<dataset>/<file>`` (checked against the card's SHA-256);
    with ``download``, a missing file is downloaded and checked. Raises FileNotFoundError
    saying how to get it when the cache lacks it.
    """
    from sciogen.data import cache_dir, cards, fetch

    file, _, key = name.partition(".npz:")
    base = Path(file + ".npz" if key else file).name
    dataset = next((c.name for c in cards().values() if c.domain == "volumes" and any(f.name == base for f in c.files)),
                   None)
    if dataset is None:
        return None
    folder = cache_dir() / dataset
    if (folder / base).is_file():
        fetch(dataset, path=folder, files=[base])  # checks the SHA-256
    elif download:
        folder = fetch(dataset, files=[base])
    else:
        raise VolumeNotFoundError(
            f"{base} of the registered dataset {dataset!r} is not in the cache ({folder}); fetch it with --download "
            f"(sciogen train volumes --download, or download=True in Python), or train on your own volumes with "
            "--data FOLDER"
        )
    path = folder / base
    return f"{path}:{key}" if key else str(path)


def axcodes_affine(axcodes: str) -> torch.Tensor:
    """The 4x4 affine of 1 mm voxels whose axes point as ``axcodes`` (e.g. ``"LIA"``) in RAS+ world."""
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = 0.0
    for axis, code in enumerate(axcodes.upper()):
        world = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[code]
        affine[world, axis] = 1.0 if code in "RAS" else -1.0
    return affine


def load_volume(path: str | Path, npz_axcodes: str = "RAS") -> MetaTensor:
    """A volume file as ``(1, X, Y, Z)`` float32 ``MetaTensor`` (first channel of a 4D file);
    ``file.npz:key`` reads an array from an ``.npz`` with the shared reader (1 mm voxels, axes
    as ``npz_axcodes``)."""
    path = str(path)
    if ".npz:" in path:
        array = read_image(path, formats=(".npz",), what="volume")
        if array.ndim != 4:
            raise NotA3DVolumeError(f"{path}: expected a 3D array, got shape {tuple(array.shape[1:])}")
        return MetaTensor(array.as_tensor(), affine=axcodes_affine(npz_axcodes), meta={"filename_or_obj": path})
    return read_volume(path)[:1]


def training_volumes(config: VolumeDataConfig, files: Sequence[str] | None = None,
                     log: RecordLog | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All training volumes on the network grid: ``((N, 1, *shape) in [-1, 1], mean grid affine (4, 4))``.

    With ``log``, a file that cannot be used is reported there and left out (else it raises).
    """
    files = resolve_files(config, log) if files is None else [str(f) for f in files]
    if not files and log is None:
        raise ValueError("no training volumes: data.files is empty")
    parts, affine = records_on_grid([{"image": f} for f in files], config, log=log)
    return parts["image"], affine


#: what a volume that cannot be used raises: reported with its file by records_on_grid
_UNUSABLE = (VolumeError, ValueError, KeyError, OSError)


def records_on_grid(records: Sequence[dict], config: VolumeDataConfig, *, names: Sequence[str] = (),
                    label: bool = False, log: RecordLog | None = None,
                    indices: Sequence[int] | None = None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Records ``{"image": path, "label": path, <name>: value}`` on the network grid.

    Returns ``({"image": (N, 1, *shape) in [-1, 1], "label": (N, 1, *shape) in [-1, 1]
    (with ``label``: label value / largest label * 2 - 1, the whole field of view mapped,
    ``"label_max"``: () the largest label), <name>: (N,) float (NaN: missing)}, mean grid
    affine (4, 4))``. A record whose volume cannot be read or mapped (corrupt, 2D, constant,
    a label off its image's grid or with non-integer values) is reported in ``log`` with its
    index (its position in ``records``, or ``indices[i]``) and left out; ``log.kept`` is set.
    Without ``log`` the first such record raises.
    """
    d = config
    indices = list(range(len(records))) if indices is None else list(indices)
    usable = list(range(len(records)))
    if label:  # first the labels alone (read again below): their largest value scales all of them
        largest = {}
        for i, record in enumerate(records):
            try:
                largest[i] = float(_label_map(record).max())
            except _UNUSABLE as err:
                _skip(log, record, indices[i], err)
        usable, label_max = list(largest), max(largest.values(), default=1.0) or 1.0
    out: dict[str, list] = {}
    affines = []
    for i in usable:
        record = records[i]
        try:
            volume = load_volume(record["image"], d.npz_axcodes)
            if label:
                lab = _label_map(record)
                check_same_geometry(volume, lab, names=("image", "label"))
                scaled = lab.as_tensor() / label_max * 2.0 - 1.0
                grid = NetworkGrid(volume, d.shape, d.percentiles, d.margin, extra=scaled, crop=False)
            else:
                grid = NetworkGrid(volume, d.shape, d.percentiles, d.margin)
            values = [math.nan if record.get(n) is None or record.get(n) == "" else float(record[n]) for n in names]
        except _UNUSABLE as err:
            _skip(log, record, indices[i], err)
            continue
        network = grid.network.as_tensor()
        out.setdefault("image", []).append(network[None, :1])
        if label:
            out.setdefault("label", []).append(network[None, 1:2])
        for name, value in zip(names, values):
            out.setdefault(name, []).append(value)
        affines.append(grid.affine)
    if log is not None:
        log.kept = len(affines)
        log.require(1, "volumes")
    parts = {k: torch.cat(v).float() if k in ("image", "label") else torch.tensor(v, dtype=torch.float32)
             for k, v in out.items()}
    if label:
        parts["label_max"] = torch.tensor(label_max)
    return parts, torch.stack(affines).mean(0)


def _label_map(record: dict) -> MetaTensor:
    """The record's label map ``(1, X, Y, Z)``, checked to hold non-negative integers."""
    if "label" not in record:
        raise VolumeError("the model is conditioned on label maps (condition.image: label) and this volume has none")
    label = read_volume(record["label"])[:1]
    values = label.as_tensor()
    if not torch.equal(values, values.round()) or float(values.min()) < 0:
        raise VolumeError(f"{record['label']}: a label map holds non-negative integers; this one holds values "
                          f"{float(values.min())} .. {float(values.max())} with fractions or negative values")
    return label


def _skip(log: RecordLog | None, record: dict, index: int, err: Exception) -> None:
    if log is None:
        raise err
    log.skip(record.get("image"), index, unusable_reason(err, record.get("image")))


def unusable_reason(err: Exception, source: object) -> str:
    """Why a volume cannot be used, for a skipped-records list (its file is named beside it)."""
    reason = str(err) if isinstance(err, VolumeError) else f"{type(err).__name__}: {err}"
    reason = " ".join(reason.removeprefix(f"{source}: ").split())  # one line (affines print as matrices)
    if isinstance(err, NotA3DVolumeError):
        reason = "not a 3D volume: " + reason.split("; pass expect_3d")[0].removeprefix("expected a 3D volume, got ")
    return reason


def augment_batch(x: torch.Tensor, config: VolumeDataConfig, generator: torch.Generator) -> torch.Tensor:
    """Random flips, rotation, zoom and gamma of a batch ``(B, C, X, Y, Z)`` in [-1, 1]."""
    b, device = x.shape[0], x.device

    def uniform(*shape):
        return (torch.rand(*shape, generator=generator, device=generator.device) * 2 - 1).to(device)

    for axis in config.flip_axes:
        flip = uniform(b) < 0
        x = torch.where(flip.view(-1, 1, 1, 1, 1), x.flip(2 + axis), x)
    if config.rotate_degrees > 0 or config.scale > 0:
        angles = uniform(b, 3) * math.radians(config.rotate_degrees)
        zoom = 1.0 + uniform(b, 1) * config.scale
        theta = torch.zeros(b, 3, 4, device=device)
        theta[:, :, :3] = _rotation(angles) / zoom.view(-1, 1, 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if config.intensity > 0:
        gamma = torch.exp(uniform(b) * math.log1p(config.intensity)).view(-1, 1, 1, 1, 1)
        x = ((x.clamp(-1, 1) + 1) / 2).pow(gamma) * 2 - 1
    return x


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (B, 3, 3) from angles (B, 3) about x, y, z."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], -1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], -1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx
