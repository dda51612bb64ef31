"""Augmentations that respect the sky frame: the image and the fiber offset move together.

Images are (batch, bands, H, W) in the standard orientation (row index runs north, column index
runs west; see ``pixel_offsets_arcsec``); fiber offsets are (batch, 2) arcsec (east, north) from the
image centre. Every transform below is applied to both, so the fiber stays on the same pixels.
Shifts crop a window out of a larger cutout, so nothing wraps around.
"""

from __future__ import annotations

import torch

from ..sky import centred_crop_corner


def flip_east_west(images: torch.Tensor, fiber_offset: torch.Tensor):
    """Mirror the columns; east offsets change sign."""
    return images.flip(-1), fiber_offset * torch.tensor([-1.0, 1.0], device=fiber_offset.device)


def rotate_90(images: torch.Tensor, fiber_offset: torch.Tensor, k: int):
    """Rotate by k x 90 degrees (``torch.rot90`` over (rows, cols)); (east, north) -> (-north, east) per step."""
    k = k % 4
    images = torch.rot90(images, k, dims=(-2, -1))
    east, north = fiber_offset[..., 0], fiber_offset[..., 1]
    for _ in range(k):
        east, north = -north, east
    return images, torch.stack([east, north], dim=-1)


def crop_window(
    images: torch.Tensor, fiber_offset: torch.Tensor, size: int, shift_rows, shift_cols, pixel_scale: float
):
    """Cut a size x size window centred `shift` pixels from the image centre; offsets follow the new centre.

    Parameters
    ----------
    images : (batch, bands, H, W), H and W >= size + 2 * max |shift|
    shift_rows, shift_cols : (batch,) integer pixel shifts of the window centre (rows north, cols west)

    Returns
    -------
    images : (batch, bands, size, size)
    fiber_offset : (batch, 2), arcsec east/north of the new centre
    """
    batch, _, height, width = images.shape
    centre_top, centre_left = centred_crop_corner(height, width, size)
    top = centre_top + shift_rows
    left = centre_left + shift_cols
    if torch.any(top < 0) or torch.any(left < 0) or torch.any(top + size > height) or torch.any(left + size > width):
        raise ValueError(
            f"crop_window: shift (rows {shift_rows.tolist()}, cols {shift_cols.tolist()}) "
            f"leaves the {height}x{width} image"
        )
    windows = torch.stack(
        [images[i, :, int(top[i]) : int(top[i]) + size, int(left[i]) : int(left[i]) + size] for i in range(batch)]
    )
    # a window moved north by r rows and west by c columns: the fiber is r rows south and c columns east of it
    offset = fiber_offset + torch.stack([shift_cols.float(), -shift_rows.float()], dim=-1) * pixel_scale
    return windows, offset


def augment_batch(
    images: torch.Tensor,
    fiber_offset: torch.Tensor,
    size: int,
    pixel_scale: float,
    generator: torch.Generator,
    max_shift: int = 0,
    flips: bool = True,
    rotations: bool = True,
):
    """Random shift (window crop), east-west flip and 90-degree rotation, the same for image and fiber.

    Draws all random numbers from `generator`, so a batch is augmented identically when the
    generator is seeded identically (exact resume).
    """
    batch, _, height, width = images.shape
    margin = min(height - size, width - size) // 2
    max_shift = max(0, min(max_shift, margin))
    shifts = torch.randint(-max_shift, max_shift + 1, (2, batch), generator=generator)
    do_flip = torch.rand(batch, generator=generator) < 0.5
    turns = torch.randint(0, 4, (batch,), generator=generator)
    images, fiber_offset = crop_window(images, fiber_offset, size, shifts[0], shifts[1], pixel_scale)
    out_images, out_offsets = [], []
    for i in range(batch):
        image, offset = images[i : i + 1], fiber_offset[i : i + 1]
        if flips and do_flip[i]:
            image, offset = flip_east_west(image, offset)
        if rotations:
            image, offset = rotate_90(image, offset, int(turns[i]))
        out_images.append(image)
        out_offsets.append(offset)
    return torch.cat(out_images), torch.cat(out_offsets)
