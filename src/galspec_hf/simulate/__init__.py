"""A synthetic universe with ground truth, written in the real survey file formats.

Galaxies with a Sersic bulge and an exponential disk, real stellar-population templates, Calzetti
dust, emission lines that follow star formation with radial abundance gradients and an optional AGN,
rotation and velocity dispersion; observed as Legacy Surveys g, r, z cutouts, DESI fiber spectra
(coadd + redrock files) and, for a subset, MaNGA-format cubes with true line maps.
See docs/SIMULATION.md. Entry points: :func:`simulate_survey` and ``galspec simulate``.
"""

from .galaxy import LINE_NAMES, Galaxy, render_maps, sample_galaxy
from .survey import simulate_galaxy, simulate_survey
from .templates import TemplateSet, load_templates

__all__ = [
    "LINE_NAMES",
    "Galaxy",
    "TemplateSet",
    "load_templates",
    "render_maps",
    "sample_galaxy",
    "simulate_galaxy",
    "simulate_survey",
]
