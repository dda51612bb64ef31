"""Fine-tune a pretrained GalSpec model on a custom survey: other bands, wavelength grid, fiber size.

Examples (see examples/README.md):

    # HSC g, r, i, z, y images (0.168"/pixel) with SDSS spectra (3800-9200 A, log-spaced, 3" fibers)
    accelerate launch examples/finetune.py --model_name_or_path runs/pretrain --dataset data/sdss_hsc \\
        --bands g r i z y --band_wavelengths 4798 6218 7727 8908 9775 --pixel_scale 0.168 \\
        --wavelength_min 3800 --wavelength_max 9200 --wavelength_step 1e-4 --wavelength_scale log10 \\
        --fiber_diameter 3.0 --freeze_encoder --output_dir runs/finetune-sdss-hsc

The weights that still fit are kept and the others initialised; both lists are printed. Training
itself is the library's pretraining loop (:mod:`galspec_hf.training.loop`, the loop of ``pretrain.py``;
same flags: --max_steps, --per_device_batch_size, checkpoints...).
"""

from __future__ import annotations

import argparse
import sys

from galspec_hf.training import adapt_pretrained, freeze_encoder
from galspec_hf.training.args import build_parser as build_pretrain_parser
from galspec_hf.training.loop import main as run_training

SURVEY_ARGUMENTS = (
    "bands",
    "band_wavelengths",
    "pixel_scale",
    "fiber_diameter",
    "wavelength_min",
    "wavelength_max",
    "wavelength_step",
    "wavelength_scale",
    "image_size",
    "normalization_band",
)


def build_parser() -> argparse.ArgumentParser:
    """The pretraining parser with the pretrained model and the custom survey's options."""
    parser = build_pretrain_parser()
    parser.description = "Fine-tune a pretrained GalSpec model on another survey."
    survey = parser.add_argument_group("custom survey (defaults: keep the pretrained model's value)")
    survey.add_argument("--model_name_or_path", required=True, help="pretrained folder (save_pretrained) or Hub id")
    survey.add_argument("--bands", nargs="+", default=None, help="band names in channel order, e.g. g r i z y")
    survey.add_argument(
        "--band_wavelengths", nargs="+", type=float, default=None, help="effective wavelength per band (A)"
    )
    survey.add_argument("--pixel_scale", type=float, default=None, help="arcsec per pixel (HSC: 0.168)")
    survey.add_argument("--fiber_diameter", type=float, default=None, help="arcsec (SDSS: 3, BOSS: 2, MaNGA: 2)")
    survey.add_argument("--wavelength_min", type=float, default=None, help="first pixel of the grid (A)")
    survey.add_argument("--wavelength_max", type=float, default=None, help="last pixel of the grid (A)")
    survey.add_argument("--wavelength_step", type=float, default=None, help="grid step: A (linear) or dex (log10)")
    survey.add_argument("--wavelength_scale", choices=["linear", "log10"], default=None)
    survey.add_argument("--image_size", type=int, default=None, help="image side in pixels")
    survey.add_argument("--normalization_band", default=None, help="band of the flux normalisation (default r)")
    survey.add_argument("--freeze_encoder", action="store_true", help="train only embeddings, decoder and heads")
    return parser


def create_finetune_model(args: argparse.Namespace):
    """The pretrained model adapted to the survey options (kept and initialised tensors printed)."""
    overrides = {name: getattr(args, name) for name in SURVEY_ARGUMENTS if getattr(args, name) is not None}
    for name in ("spectrum_mask_ratio", "image_mask_ratio", "mask_mode_probabilities"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    adapted = adapt_pretrained(args.model_name_or_path, seed=args.seed, **overrides)
    print(f"kept {len(adapted.kept)} pretrained tensors: {', '.join(adapted.kept)}")
    print(f"initialised {len(adapted.initialized)} tensors: {', '.join(adapted.initialized) or '(none)'}")
    if args.freeze_encoder:
        frozen = freeze_encoder(adapted.model)
        print(f"froze {len(frozen)} encoder tensors")
    adapted.model.set_attn_implementation(args.attn_implementation)
    return adapted.model


def main(argv: list[str] | None = None) -> int:
    """Parse the fine-tuning options and train the adapted model with the pretraining loop."""
    return run_training(argv, parser=build_parser(), create_model=create_finetune_model)


if __name__ == "__main__":
    sys.exit(main())
