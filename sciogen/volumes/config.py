"""The volumes domain's run config (one YAML file, e.g. ``domains/volumes/brain_mri.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sciogen.train.config import ConfigError, RunConfig, SamplingConfig, check_choice

_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}

__all__ = ["VolumeDataConfig", "VolumeModelConfig", "VolumeLatentConfig", "VolumeConditionConfig", "VolumeProcessConfig",
           "VolumeSamplingConfig", "VolumeConfig"]


@dataclass
class VolumeDataConfig:
    """Training volumes and the grid the network works on.

    Where the volumes come from, first match wins:

    - ``path`` (your own data, ``sciogen train volumes --data PATH``): a folder searched
      recursively, a glob, a file, or a list of these, of NIfTI (``.nii``, ``.nii.gz``),
      MetaImage (``.mha``, ``.mhd``), NRRD (``.nrrd``, ``.nhdr``) files and DICOM-series
      folders (a folder holding ``.dcm`` files is one volume); with ``labels`` and
      ``covariates`` as :func:`~sciogen.volumes.datasets.own_volume_records` describes.
    - ``root`` + ``files`` (a folder of your own and names in it, e.g. the developers'
      copy of the shipped recipe's brains).
    - ``root: null``: the dataset registry's copy (``$SCIOGEN_CACHE``, or the checksummed
      download of ``--download``) of those ``files`` that a dataset card lists (matched by
      file name); the others are reported as skipped.

    Attributes:
        root: folder the ``files`` are relative to (``~`` and relative paths allowed); None:
            the dataset registry's copy.
        files: volume files (NIfTI, MHA, NRRD), or ``file.npz:key`` for an array in an
            ``.npz`` (1 mm voxels, axes as ``npz_axcodes``); a 4D file contributes its first volume.
        path: your own volumes (see above); None: ``root`` + ``files``.
        labels: with ``path``, a folder of label volumes matched to the volumes by name.
        covariates: with ``path``, a CSV file of per-volume numeric covariates.
        npz_axcodes: where the axes of ``.npz`` arrays point, as NIfTI orientation codes
            (``"RAS"``: identity affine; the voxelmorph scans are FreeSurfer-conformed ``"LIA"``).
        shape: the network's grid (multiples of 2^(levels - 1) of the U-Net).
        percentiles: intensity percentiles mapped to [-1, 1] per volume.
        margin: fraction of the foreground box added on each side before resizing.
        flip_axes: spatial axes randomly mirrored during training (0: left-right in RAS).
        rotate_degrees: largest random rotation about each axis during training.
        scale: largest relative random zoom during training (0.1: 0.9x to 1.1x).
        intensity: largest random gamma exponent change during training (0.2: 0.8 to 1.2).
    """

    root: str | None = None
    files: list[str] = field(default_factory=lambda: [
        "nilearn_0.14.1/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "voxelmorph/test_scan.npz:vol",
        "nibabel_5.4.2/anatomical.nii",
        "dipy_1.12.1/aniso_vox.nii.gz",
    ])
    npz_axcodes: str = "RAS"
    shape: list[int] = field(default_factory=lambda: [32, 32, 32])
    percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    margin: float = 0.05
    flip_axes: list[int] = field(default_factory=lambda: [0])
    rotate_degrees: float = 8.0
    scale: float = 0.08
    intensity: float = 0.2
    path: str | list[str] | None = None
    labels: str | None = None
    covariates: str | None = None

    def __post_init__(self):
        if (self.labels or self.covariates) and not self.path:
            raise ConfigError("data.labels and data.covariates go with data.path (your own volumes, --data PATH)")
        if len(self.shape) != 3 or any(int(n) < 8 for n in self.shape):
            raise ConfigError(f"data.shape must give 3 sizes >= 8, got {self.shape}")
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ConfigError(f"data.percentiles must be [low, high] with 0 <= low < high <= 100, got {self.percentiles}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ConfigError(f"data.flip_axes must be spatial axes 0, 1 or 2, got {self.flip_axes}")
        codes = self.npz_axcodes.upper()
        if len(codes) != 3 or sorted(_AXIS[c] for c in codes if c in _AXIS) != [0, 1, 2]:
            raise ConfigError(f"data.npz_axcodes must name each of the three axes once (R/L, A/P, S/I), "
                              f"got {self.npz_axcodes!r}")
        for name in ("margin", "rotate_degrees", "scale", "intensity"):
            if getattr(self, name) < 0:
                raise ConfigError(f"data.{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class VolumeModelConfig:
    """MONAI ``DiffusionModelUNet`` options (3D, one channel in and out).

    No attention by default: the network is then fully convolutional and generates volumes
    larger than its training grid (the 128^3 path), and its memory grows only linearly.
    Keep at least two channels per GroupNorm group (``channels[0] / norm_num_groups >= 2``):
    MONAI's ResNet blocks add the time (and covariate) embedding just before a GroupNorm, which
    removes a per-channel shift entirely when a group holds one channel.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    attention_levels: list[bool] = field(default_factory=lambda: [False, False, False])
    num_res_blocks: int = 1
    norm_num_groups: int = 8

    def __post_init__(self):
        if len(self.attention_levels) != len(self.channels):
            raise ConfigError(f"model.attention_levels needs one entry per level of model.channels {self.channels}, "
                              f"got {self.attention_levels}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ConfigError(f"model.channels {self.channels} must be multiples of model.norm_num_groups "
                              f"({self.norm_num_groups})")


@dataclass
class VolumeLatentConfig:
    """Latent diffusion (:mod:`sciogen.volumes.latent`): MONAI ``AutoencoderKL`` options and
    its training stage. With ``enabled``, ``model`` describes the U-Net on the latent grid
    (``data.shape`` / 2^(len(channels) - 1)).

    Attributes:
        enabled: train and sample in the autoencoder's latent space.
        channels: autoencoder channels per level (each level after the first halves the grid).
        latent_channels: channels of the latent volume.
        num_res_blocks: residual blocks per autoencoder level.
        norm_num_groups: GroupNorm groups of the autoencoder.
        kl_weight: weight of the KL term of the autoencoder loss.
        steps: autoencoder training steps (stage 1; then ``train.steps`` of diffusion).
        lr: autoencoder learning rate.
    """

    enabled: bool = False
    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    latent_channels: int = 3
    num_res_blocks: int = 1
    norm_num_groups: int = 8
    kl_weight: float = 1e-6
    steps: int = 1000
    lr: float = 1e-3

    def __post_init__(self):
        if len(self.channels) < 2:
            raise ConfigError(f"latent.channels needs at least 2 levels (one downsampling), got {self.channels}")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ConfigError(f"latent.channels {self.channels} must be multiples of latent.norm_num_groups "
                              f"({self.norm_num_groups})")
        if self.latent_channels < 1 or self.steps < 1 or self.lr <= 0 or self.kl_weight < 0:
            raise ConfigError("latent.latent_channels and latent.steps must be >= 1, latent.lr > 0 and "
                              f"latent.kl_weight >= 0; got {self.latent_channels}, {self.steps}, {self.lr}, "
                              f"{self.kl_weight}")

    @property
    def factor(self) -> int:
        """Voxels per latent voxel along each axis."""
        return 2 ** (len(self.channels) - 1)


@dataclass
class VolumeConditionConfig:
    """What the network is conditioned on (:mod:`sciogen.volumes.conditioning`); the
    defaults give the unconditional model.

    Attributes:
        scalars: names of scalar covariates (e.g. ``[age]``), standardised by the training values.
        classes: categorical covariates and their number of classes (e.g. ``{sex: 2}``).
        dropout: probability of dropping all covariates of a training sample (classifier-free
            guidance needs the unconditional model too).
        guidance: default classifier-free guidance scale (1: the plain conditional model).
        image: ``"none"``, ``"lowres"`` (super-resolution from the volume averaged over
            ``factor``^3 blocks), ``"paired"`` (a paired volume given with the training data),
            ``"masked"`` (inpainting: the volume with a region blanked, and the region's mask;
            training blanks random boxes) or ``"label"`` (synthesis from a label map on the
            volume's grid: ``--labels``; the whole field of view is mapped, no cropping).
        factor: the super-resolution factor of ``"lowres"``.
    """

    scalars: list[str] = field(default_factory=list)
    classes: dict[str, int] = field(default_factory=dict)
    dropout: float = 0.15
    guidance: float = 1.0
    image: str = "none"
    factor: int = 2

    def __post_init__(self):
        check_choice("condition.image", self.image, ("none", "lowres", "paired", "masked", "label"))
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"condition.dropout must be in [0, 1), got {self.dropout}")
        if self.guidance < 0:
            raise ConfigError(f"condition.guidance must be >= 0, got {self.guidance}")
        if self.image == "lowres" and self.factor < 2:
            raise ConfigError(f"condition.factor must be >= 2, got {self.factor}")
        both = set(self.scalars) & set(self.classes)
        if both or len(set(self.scalars)) != len(self.scalars):
            raise ConfigError(f"condition covariate names must be unique across scalars and classes, "
                              f"repeated: {sorted(both) or self.scalars}")
        bad = {k: v for k, v in self.classes.items() if int(v) < 2}
        if bad:
            raise ConfigError(f"condition.classes need at least 2 classes each, got {bad}")

    @property
    def names(self) -> list[str]:
        """All covariates: the scalars, then the classes (the order of the covariate tensor)."""
        return [*self.scalars, *self.classes]

    @property
    def image_channels(self) -> int:
        return {"none": 0, "masked": 2}.get(self.image, 1)


@dataclass
class VolumeProcessConfig:
    """The training noise schedule, as MONAI schedulers take it (so MONAI's DDPM / DDIM
    schedulers sample the same network: see ``benchmarks/volumes.py``)."""

    num_train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction: str = "epsilon"

    def __post_init__(self):
        check_choice("process.schedule", self.schedule, ("linear_beta", "scaled_linear_beta", "sigmoid_beta"))
        check_choice("process.prediction", self.prediction, ("epsilon", "v_prediction", "sample"))
        if self.num_train_timesteps < 2:
            raise ConfigError(f"process.num_train_timesteps must be >= 2, got {self.num_train_timesteps}")


@dataclass
class VolumeSamplingConfig(SamplingConfig):
    """Sampling defaults: a core solver on the MONAI timestep grid; ``level`` is the default
    SDEdit depth of :meth:`~sciogen.volumes.VolumeGenerator.augment`; ``patch_size`` (None:
    whole volume) runs each network call by MONAI's sliding window with that patch size;
    ``clip`` clips each clean estimate to the data range [-1, 1] (the network output is then
    made consistent with the clipped estimate, unlike MONAI's schedulers, which keep the
    network's noise estimate); ``spacing``: solver timesteps evenly spaced in log-SNR
    (``"logsnr"``, the default: far closer to the ODE solution at 10-20 steps) or in
    timesteps (``"uniform"``, as MONAI's DDIM)."""

    steps: int = 20
    batch_size: int = 2
    level: float = 0.3
    patch_size: list[int] | None = None
    overlap: float = 0.25
    clip: bool = False
    spacing: str = "logsnr"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.level <= 1.0:
            raise ConfigError(f"sampling.level must be in (0, 1], got {self.level}")
        if self.patch_size is not None and (len(self.patch_size) != 3 or min(self.patch_size) < 8):
            raise ConfigError(f"sampling.patch_size must be null or 3 sizes >= 8, got {self.patch_size}")
        check_choice("sampling.spacing", self.spacing, ("uniform", "logsnr"))
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"sampling.overlap must be in [0, 1), got {self.overlap}")


@dataclass
class VolumeConfig(RunConfig):
    """Run config of :class:`~sciogen.volumes.VolumeGenerator`."""

    domain: str = "volumes"
    data: VolumeDataConfig = field(default_factory=VolumeDataConfig)
    model: VolumeModelConfig = field(default_factory=VolumeModelConfig)
    latent: VolumeLatentConfig = field(default_factory=VolumeLatentConfig)
    condition: VolumeConditionConfig = field(default_factory=VolumeConditionConfig)
    process: VolumeProcessConfig = field(default_factory=VolumeProcessConfig)
    sampling: VolumeSamplingConfig = field(default_factory=VolumeSamplingConfig)

    def __post_init__(self):
        if self.latent.enabled and self.condition.image != "none":
            raise ConfigError("image conditioning (condition.image) works in pixel space only; set latent.enabled: "
                              "false or condition.image: none")
        if self.latent.enabled and any(n % self.latent.factor for n in self.data.shape):
            raise ConfigError(f"data.shape {self.data.shape} must be multiples of {self.latent.factor} for "
                              f"latent.channels {self.latent.channels}")

