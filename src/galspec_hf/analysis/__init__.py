"""Measurements on spectra and cubes: emission-line maps and spectral indices (:mod:`.lines`)."""

from .lines import (
    DAP_CHANNEL_NAMES,
    KINEMATIC_GROUPS,
    LINE_NAMES,
    LineMaps,
    default_instrumental_sigma_kms,
    desi_instrumental_sigma_kms,
    dn4000,
    fit_emission_lines,
)

__all__ = [
    "DAP_CHANNEL_NAMES",
    "KINEMATIC_GROUPS",
    "LINE_NAMES",
    "LineMaps",
    "default_instrumental_sigma_kms",
    "desi_instrumental_sigma_kms",
    "dn4000",
    "fit_emission_lines",
]
