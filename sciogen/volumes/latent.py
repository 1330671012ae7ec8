"""Latent diffusion for volumes: MONAI's ``AutoencoderKL`` and a diffusion U-Net in its latent space.

Training has two stages, both run by the shared trainer
(:meth:`~sciogen.volumes.VolumeGenerator.fit` with ``config.latent.enabled``):

1. the autoencoder, with an L1 reconstruction loss plus ``kl_weight`` times the KL
   divergence of its Gaussian posterior from N(0, I) (Rombach et al. 2022; the perceptual and
   adversarial terms of MONAI's tutorials are left out: there is no 3D perceptual network to
   load offline); its checkpoints go to ``<run_dir>/autoencoder``;
2. the autoencoder frozen, its latents scaled to unit variance (``scale``, measured on the
   training volumes, as LDM's scale factor) and the diffusion U-Net trained on them.

Sampling draws latent noise, runs the core solver and decodes. A 32^3 volume with two
autoencoder levels is generated as an 8^3 latent: the U-Net works on 64x fewer voxels.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

__all__ = ["LatentDiffusion", "autoencoder_loss"]


class LatentDiffusion(nn.Module):
    """The autoencoder and the latent denoiser of one latent diffusion model.

    ``forward`` is the denoiser on latents (``unet(z_t, timesteps, **cond)``), so the
    trainer and the solvers see an ordinary diffusion network; :meth:`encode` /
    :meth:`decode` move between volumes and scaled latents.
    """

    def __init__(self, autoencoder_options: Mapping[str, Any], unet: nn.Module):
        super().__init__()
        self.autoencoder = AutoencoderKL(**autoencoder_options)
        self.unet = unet
        self.register_buffer("scale", torch.ones(()))
        self.levels = len(autoencoder_options["channels"])

    @property
    def covariates(self):
        return getattr(self.unet, "covariates", None)

    @property
    def factor(self) -> int:
        """Voxels per latent voxel along each axis."""
        return 2 ** (self.levels - 1)

    def forward(self, z_t: torch.Tensor, timesteps: torch.Tensor, **cond) -> torch.Tensor:
        return self.unet(z_t, timesteps=timesteps, **cond)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Volumes ``(B, 1, *S)`` -> scaled latents ``(B, latent_channels, *S / factor)`` (posterior means)."""
        mu, _ = self.autoencoder.encode(x)
        return mu * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> volumes."""
        return self.autoencoder.decode(z / self.scale)

    @torch.no_grad()
    def fit_scale(self, volumes: torch.Tensor, batch_size: int = 8) -> float:
        """Set ``scale`` to 1 / std of the (unscaled) latents of ``volumes``; returns it."""
        self.scale.fill_(1.0)
        device = self.scale.device
        latents = torch.cat([self.encode(volumes[i:i + batch_size].to(device)) for i in range(0, len(volumes), batch_size)])
        self.scale.fill_(1.0 / float(latents.std().clamp_min(1e-6)))
        return float(self.scale)


def autoencoder_loss(autoencoder: nn.Module, x: torch.Tensor, kl_weight: float) -> torch.Tensor:
    """Per-volume L1 reconstruction loss plus ``kl_weight`` x KL(q(z | x) || N(0, I)) summed over latent voxels."""
    reconstruction, mu, sigma = autoencoder(x)
    l1 = (reconstruction - x).abs().flatten(1).mean(1)
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2).clamp_min(1e-12)) - 1.0).flatten(1).sum(1)
    return l1 + kl_weight * kl
