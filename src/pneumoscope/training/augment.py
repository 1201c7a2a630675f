"""Online augmentation of whole batches as tensor ops on the training device (a GPU does it, not the data loader).

Input and output: float tensors ``(B, C, H, W)`` with values in [0, 1]. Geometric transforms come from kornia;
the photometric ones are written here so that their meaning is exact for a grey-level X-ray (contrast about the
image's own mean, gamma on [0, 1]). Random parameters come from torch's global generator, so that
``lightning.seed_everything`` / ``torch.manual_seed`` make a run's augmentation repeatable. No flips by default:
a chest X-ray is not left-right symmetric.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pneumoscope.training.config import AugmentConfig


def _to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Per-sample values ``(B,)`` drawn on the CPU → ``(B, 1, 1, 1)`` float32 on ``device``.

    ``non_blocking``: a blocking host-to-GPU copy waits for all queued GPU work (the previous step), so that the
    GPU would idle while Python launches the next kernels; from pageable memory the copy is staged, so it is safe.
    """
    return values.to(device=device, dtype=torch.float32, non_blocking=True).view(-1, 1, 1, 1)


def _uniform(batch: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    """Per-sample factors drawn on the CPU generator (same values on CPU and GPU for one seed)."""
    return _to_device(torch.rand(batch) * (high - low) + low, device)


def _chosen(batch: int, p: float, device: torch.device) -> torch.Tensor:
    """Per-sample 0/1 mask: which samples get a transform applied with probability ``p``."""
    return _to_device(torch.rand(batch) < p, device)


def adjust_gamma(x: torch.Tensor, low: float, high: float, p: float) -> torch.Tensor:
    """``x ** gamma`` with gamma ~ U(low, high) per sample, applied with probability ``p``."""
    batch = x.shape[0]
    gamma = _uniform(batch, low, high, x.device)
    mask = _chosen(batch, p, x.device)
    return mask * x.clamp_min(0.0).pow(gamma) + (1.0 - mask) * x


def adjust_brightness(x: torch.Tensor, amount: float, p: float) -> torch.Tensor:
    """``x + delta`` with delta ~ U(-amount, amount) per sample, applied with probability ``p``."""
    batch = x.shape[0]
    delta = _uniform(batch, -amount, amount, x.device) * _chosen(batch, p, x.device)
    return x + delta


def adjust_contrast(x: torch.Tensor, amount: float, p: float) -> torch.Tensor:
    """Scale each image about its own mean by a factor ~ U(1-amount, 1+amount), with probability ``p``."""
    batch = x.shape[0]
    factor = _uniform(batch, 1.0 - amount, 1.0 + amount, x.device)
    mask = _chosen(batch, p, x.device)
    factor = mask * factor + (1.0 - mask)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * factor + mean


def add_noise(x: torch.Tensor, max_std: float, p: float) -> torch.Tensor:
    """Gaussian noise with std ~ U(0, max_std) per sample, applied with probability ``p``."""
    batch = x.shape[0]
    std = _uniform(batch, 0.0, max_std, x.device) * _chosen(batch, p, x.device)
    return x + torch.randn_like(x) * std


def unsharp_mask(x: torch.Tensor, low: float, high: float, sigma: float, p: float) -> torch.Tensor:
    """Edge enhancement ``x + amount * (x - blur(x))`` with amount ~ U(low, high) per sample, with probability ``p``.

    What vendor post-processing does to a radiograph; the stress test's ``sharpen`` perturbation is the same filter.
    """
    from kornia.filters import gaussian_blur2d

    batch = x.shape[0]
    amount = _uniform(batch, low, high, x.device) * _chosen(batch, p, x.device)
    kernel = 2 * math.ceil(3 * sigma) + 1
    blurred = gaussian_blur2d(x, (kernel, kernel), (sigma, sigma), border_type="reflect")
    return x + amount * (x - blurred)


def resolution_jitter(x: torch.Tensor, low: float, high: float, p: float) -> torch.Tensor:
    """Down-sample (anti-aliased) then up-sample back a random subset of the batch, with probability ``p`` each.

    One factor ~ U(low, high) per batch: resizing needs one output size per call, and across batches the factors
    cover the range.
    """
    batch, _, height, width = x.shape
    chosen = torch.rand(batch) < p  # tested on the CPU: asking a GPU tensor would wait for the GPU
    factor = float(torch.rand(1)) * (high - low) + low
    small = (max(4, round(height * factor)), max(4, round(width * factor)))
    if small == (height, width) or not bool(chosen.any()):
        return x
    mask = _to_device(chosen, x.device)
    down = F.interpolate(x, size=small, mode="bilinear", antialias=True, align_corners=False)
    up = F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)
    return mask * up + (1.0 - mask) * x


def grid_distortion(x: torch.Tensor, magnitude: float, cells: int, p: float) -> torch.Tensor:
    """Smooth local warping (Augmentor's "random distortion"), applied with probability ``p`` per sample.

    The image is divided into ``cells`` x ``cells`` cells; each inner grid point moves by up to ``magnitude`` (a
    fraction of the side) in x and y, the border points stay; the displacement between points is interpolated
    bicubically.
    """
    batch, _, height, width = x.shape
    mask = _chosen(batch, p, x.device)
    if magnitude <= 0 or not bool(mask.any()):
        return x
    offsets = (torch.rand(batch, 2, cells + 1, cells + 1) * 2.0 - 1.0) * (2.0 * magnitude)  # [-1, 1] coordinates
    offsets[:, :, 0, :] = offsets[:, :, -1, :] = offsets[:, :, :, 0] = offsets[:, :, :, -1] = 0.0
    offsets = offsets.to(x.device) * mask
    field = F.interpolate(offsets, size=(height, width), mode="bicubic", align_corners=True)
    identity = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(batch, 2, 3)
    grid = F.affine_grid(identity, [batch, 1, height, width], align_corners=False)
    return F.grid_sample(x, grid + field.permute(0, 2, 3, 1).to(x.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


class BatchAugment(nn.Module):
    """The augmentation of ``AugmentConfig`` for images of ``image_size`` pixels, applied to a whole batch."""

    def __init__(self, config: AugmentConfig, image_size: int):
        super().__init__()
        import kornia.augmentation as K

        self.config = config
        self.image_size = image_size
        geometric: list[nn.Module] = []
        if config.crop_scale is not None:
            geometric.append(K.RandomResizedCrop((image_size, image_size), scale=tuple(config.crop_scale),
                                                 ratio=tuple(config.crop_ratio), cropping_mode="resample", p=1.0))
        if config.rotation > 0 or config.shift > 0 or tuple(config.scale) != (1.0, 1.0):
            geometric.append(K.RandomAffine(
                degrees=config.rotation,
                translate=(config.shift, config.shift) if config.shift > 0 else None,
                scale=tuple(config.scale) if tuple(config.scale) != (1.0, 1.0) else None,
                padding_mode="zeros", p=1.0,
            ))
        if config.skew > 0:
            geometric.append(K.RandomPerspective(distortion_scale=config.skew, p=config.skew_p))
        if config.hflip:
            geometric.append(K.RandomHorizontalFlip(p=0.5))
        if config.vflip:
            geometric.append(K.RandomVerticalFlip(p=0.5))
        self.geometric = nn.Sequential(*geometric)
        self.blur: nn.Module | None = None
        if config.blur_p > 0:
            kernel = 2 * math.ceil(3 * config.blur_sigma[1]) + 1
            self.blur = K.RandomGaussianBlur(kernel, tuple(config.blur_sigma), p=config.blur_p)

    @property
    def is_identity(self) -> bool:
        c = self.config
        return not c.enabled or (
            len(self.geometric) == 0 and self.blur is None and c.noise_p == 0 and c.resolution_p == 0
            and c.sharpen_p == 0
            and (c.distortion == 0 or c.distortion_p == 0)
            and (c.photometric_p == 0 or (c.brightness == 0 and c.contrast == 0 and c.gamma is None))
        )

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Augmented copy of ``x`` (float ``(B, C, H, W)`` in [0, 1]), same shape, values clamped to [0, 1]."""
        if self.is_identity:
            return x
        c = self.config
        dtype = x.dtype
        x = x.float()
        if len(self.geometric):
            x = self.geometric(x)
        if c.distortion > 0 and c.distortion_p > 0:
            x = grid_distortion(x, c.distortion, c.distortion_grid, c.distortion_p)
        if c.gamma is not None:
            x = adjust_gamma(x, c.gamma[0], c.gamma[1], c.photometric_p)
        if c.brightness > 0:
            x = adjust_brightness(x, c.brightness, c.photometric_p)
        if c.contrast > 0:
            x = adjust_contrast(x, c.contrast, c.photometric_p)
        x = x.clamp(0.0, 1.0)
        if self.blur is not None:
            x = self.blur(x)
        if c.sharpen_p > 0:
            x = unsharp_mask(x, c.sharpen_amount[0], c.sharpen_amount[1], c.sharpen_sigma, c.sharpen_p).clamp(0.0, 1.0)
        if c.resolution_p > 0:
            x = resolution_jitter(x, c.resolution_scale[0], c.resolution_scale[1], c.resolution_p)
        if c.noise_p > 0:
            x = add_noise(x, c.noise_std, c.noise_p)
        return x.clamp(0.0, 1.0).to(dtype)


def augment_seeded(augment: BatchAugment, x: torch.Tensor, seed: int) -> torch.Tensor:
    """``augment(x)`` with its random draws taken from ``seed``, leaving the global generators as they were."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return augment(x)
