"""Emission-line maps and Dn4000, fitted over all spaxels at once.

The model (see docs/LINES.md): each line is a Gaussian integrated over the pixel, its observed centre
``lambda_rest (1 + z) (1 + v / c)`` and its observed width ``lambda_centre / c * sqrt(sigma^2 + sigma_inst^2)``.
Velocity ``v`` and intrinsic dispersion ``sigma`` are tied within two kinematic groups: the Balmer lines
(H-alpha, H-beta) and the forbidden lines ([NII], [OIII], [SII], [OII]); the MaNGA DAP also ties emission-line
kinematics (Belfiore et al. 2019, AJ 158, 160), with its own choice of ties. ``dispersions="free"`` (or
``"auto"``, at high S/N) then refits each line (doublets together) with its own sigma, within 1.4x of its group's,
as the DAP's ELPMPL11 line list bounds each line's to H-alpha's. [NII] 6550 = [NII] 6585 / 3.05 and
[OIII] 4960 = [OIII] 5008 / 2.98 are fixed to their atomic values (Storey & Zeippen 2000). Each line complex (a
rest-frame window) has its own straight-line continuum, fitted at the same time as the lines, so the flux error
includes the continuum's uncertainty; a broad Gaussian trough under H-alpha and H-beta stands in for stellar
Balmer absorption. That is the ``continuum="local"`` mode; the default ``continuum="template"`` first subtracts
a stellar-template continuum (:mod:`galspec_hf.analysis.continuum`, line windows masked) and fits the lines on the
residual without the straight lines and troughs; then (``continuum_refit="same"``, the default) refits the
continuum's weights, same templates and kinematics, on the spectrum minus those lines with their windows unmasked,
and the lines on the new residual: one step towards the joint fit of continuum and lines that the MaNGA DAP's Sasuke
makes (``continuum_refit="sasuke"`` refits as Sasuke does: the whole library, no additive polynomial).

The fit is a batched Levenberg-Marquardt (Levenberg 1944; Marquardt 1963) over all spectra at once in numpy:
a grid search over a shared velocity and dispersion (amplitudes and continua solved by weighted linear least
squares at every grid point) gives the start, then 4 non-linear (v, sigma^2 of each group) and 20 linear
parameters are refined together. Errors are the square roots of the diagonal of the inverse of J^T W J
(W = ivar) at the solution (linear propagation of the ivar), multiplied by sqrt(max(1, chi^2/dof)) of the line's
complex unless ``rescale_errors=False``.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from .. import constants as C
from ..spectral import desi_sigma_kms as desi_instrumental_sigma_kms
from ..spectral import manga_sigma_kms as default_instrumental_sigma_kms
from ..spectral import pixel_edges, resolution_to_sigma_kms
from .continuum import fit_stellar_continuum

__all__ = [
    "LINE_NAMES",
    "DAP_CHANNEL_NAMES",
    "KINEMATIC_GROUPS",
    "LineMaps",
    "fit_emission_lines",
    "dn4000",
    "default_instrumental_sigma_kms",
    "desi_instrumental_sigma_kms",
]

_C_KMS = C.SPEED_OF_LIGHT_KMS
_LINES = C.EMISSION_LINES_VACUUM_A

#: Lines measured, in output order (keys of :data:`galspec_hf.constants.EMISSION_LINES_VACUUM_A`).
LINE_NAMES = C.MODELLED_EMISSION_LINES
_LINE_REST_A = np.array([_LINES[name] for name in LINE_NAMES])
#: Channel names written to the FITS headers (C01, C02, ...): the MaNGA DAP's names, as in the EMLINE_GFLUX header
#: of ../shared/data/manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz.
DAP_CHANNEL_NAMES = C.DAP_CHANNEL_NAMES
#: Lines sharing one velocity (always) and one intrinsic dispersion (``dispersions="tied"``, and the first fit of
#: every spectrum).
KINEMATIC_GROUPS = {
    "balmer": ("Hbeta", "Halpha"),
    "forbidden": ("OII_3727", "OII_3730", "OIII_4960", "OIII_5008", "NII_6550", "NII_6585", "SII_6718", "SII_6733"),
}
_GROUP_INDEX = {name: i for i, group in enumerate(KINEMATIC_GROUPS.values()) for name in group}
#: Lines sharing one dispersion when the dispersions are free (``dispersions="free"``, or ``"auto"`` at high S/N):
#: each line with its own, the members of a doublet together. As in the MaNGA DAP's line list ELPMPL11
#: (sdss-mangadap, mangadap/data/emission_lines/elpmpl11.par): [OIII] 4960, [NII] 6550 tied to their partners in
#: velocity and dispersion, the other lines free in dispersion within a factor DISPERSION_TIE_FACTOR.
FREE_DISPERSION_GROUPS = {
    "Hbeta": ("Hbeta",),
    "Halpha": ("Halpha",),
    "OII": ("OII_3727", "OII_3730"),
    "OIII": ("OIII_4960", "OIII_5008"),
    "NII": ("NII_6550", "NII_6585"),
    "SII": ("SII_6718", "SII_6733"),
}
#: A free dispersion stays within this factor of its kinematic group's tied dispersion (fitted first): ELPMPL11's
#: inequality tie of each line's sigma to H-alpha's ("1.4" in its tie column), here relative to the tied fit.
DISPERSION_TIE_FACTOR = 1.4
#: With ``dispersions="auto"`` the dispersions are freed in spectra whose strongest fitted line (flux over its
#: error, in the tied fit) reaches this S/N; below it a line's own width is too poorly measured to help.
FREE_DISPERSION_MIN_SNR = 10.0
DISPERSION_MODES = ("tied", "free", "auto")
CONTINUUM_MODES = ("template", "local", "none")

#: Rest-frame fitting windows (vacuum Angstrom) of the line complexes; each has its own linear continuum. They
#: leave >= 20 A (~1000 km/s at H-alpha) of continuum on both sides of the outermost lines.
COMPLEX_WINDOWS_REST_A = {
    "OII": (3697.0, 3760.0),
    "Hbeta": (4805.0, 4920.0),
    "OIII": (4935.0, 5035.0),
    "Halpha": (6510.0, 6625.0),
    "SII": (6690.0, 6760.0),
}
# Fitted components: (name of the flux parameter, complex, [(line, flux of the line / flux parameter), ...]).
_COMPONENTS = (
    ("OII_3727", "OII", (("OII_3727", 1.0),)),
    ("OII_3730", "OII", (("OII_3730", 1.0),)),
    ("Hbeta", "Hbeta", (("Hbeta", 1.0),)),
    ("OIII_5008", "OIII", (("OIII_5008", 1.0), ("OIII_4960", 1.0 / C.OIII_DOUBLET_RATIO))),
    ("Halpha", "Halpha", (("Halpha", 1.0),)),
    ("NII_6585", "Halpha", (("NII_6585", 1.0), ("NII_6550", 1.0 / C.NII_DOUBLET_RATIO))),
    ("SII_6718", "SII", (("SII_6718", 1.0),)),
    ("SII_6733", "SII", (("SII_6733", 1.0),)),
)
_COMPLEXES = tuple(COMPLEX_WINDOWS_REST_A)
_N_COMP = len(_COMPONENTS)
#: Stellar Balmer absorption under H-beta and H-alpha: one broad Gaussian column per line, fixed at the given
#: redshift with a fixed rest-frame sigma (BALMER_ABSORPTION_SIGMA_KMS), free (signed) amplitude. A local stand-in
#: for the stellar-continuum fit of the MaNGA DAP (Westfall et al. 2019, AJ 158, 231): without it, absorption
#: troughs of old populations pull H-beta emission fluxes low (or negative). Off with balmer_absorption=False.
_ABSORPTION = (("Hbeta", "Hbeta"), ("Halpha", "Halpha"))
#: Gaussian sigma of the absorption troughs, km/s: 450 km/s is 7.3 A at H-beta and 9.8 A at H-alpha, the core
#: width of Balmer absorption in intermediate-age and old populations (EW 2-6 A; Worthey & Ottaviani 1997,
#: ApJS 111, 377: H-delta_F/H-gamma_F index bands are ~20 A wide).
BALMER_ABSORPTION_SIGMA_KMS = 450.0
_N_ABS = len(_ABSORPTION)
_I_CONT = _N_COMP + _N_ABS
_N_LIN = _I_CONT + 2 * len(_COMPLEXES)  # line fluxes, absorption depths, (offset, slope) per complex
# the non-linear parameters: one v per kinematic group (_N_VEL), then one sigma^2 per dispersion group
_N_VEL = len(KINEMATIC_GROUPS)
#: The linear parameters (columns of the design matrix) of each complex: its line components, its Balmer
#: absorption, its continuum offset and slope. A column is non-zero only on its complex's pixels, so at fixed
#: kinematics the normal equations split into one small system per complex.
_COMPLEX_COLUMNS = {
    name: np.array([k for k, comp in enumerate(_COMPONENTS) if comp[1] == name]
                   + [_N_COMP + j for j, (_, cplx) in enumerate(_ABSORPTION) if cplx == name]
                   + [_I_CONT + 2 * c, _I_CONT + 2 * c + 1])
    for c, name in enumerate(_COMPLEXES)
}  # fmt: skip
_CONT_SLOPE_SCALE_A = 100.0  # continuum slope parameter per 100 A (conditioning)

#: Search range of the fit: |v| <= VELOCITY_LIMIT_KMS, intrinsic sigma <= SIGMA_LIMIT_KMS.
VELOCITY_LIMIT_KMS = 500.0
SIGMA_LIMIT_KMS = 350.0
_GRID_VELOCITY_KMS = np.arange(-480.0, 481.0, 40.0)
_GRID_SIGMA_KMS = np.array([30.0, 120.0, 300.0])
# A line is measured only where >= this many unmasked pixels lie within +-_LINE_CORE_KMS of its expected centre, and
# its window has >= _MIN_WINDOW_PIXELS unmasked pixels (else NaN with the DAP NOVALUE bit).
_LINE_CORE_KMS = 250.0
_MIN_CORE_PIXELS = 3
_MIN_WINDOW_PIXELS = 10


# ----------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------
@dataclass
class LineMaps:
    """Emission-line and Dn4000 measurements; every array has the leading shape of the input spectra.

    Attributes
    ----------
    line_names : tuple of str
        Keys of the per-line dicts (:data:`LINE_NAMES`).
    flux, flux_err : dict of str -> ndarray, shape (...)
        Line flux in 1e-17 erg/s/cm2 (per spaxel for a cube) and its 1-sigma error from the ivar.
        NaN where the line is not covered by unmasked pixels.
    velocity_kms, velocity_err_kms : dict of str -> ndarray, shape (...)
        Line-of-sight velocity relative to the given redshift, km/s: centre = lambda_rest (1 + z) (1 + v / c).
        The same for all lines of a kinematic group (:data:`KINEMATIC_GROUPS`).
    dispersion_kms, dispersion_err_kms : dict of str -> ndarray, shape (...)
        Intrinsic Gaussian sigma, km/s, the instrument removed in quadrature (0 for lines narrower than the
        instrument). Same within a kinematic group, or within a doublet where the fit freed the dispersions
        (``dispersions`` of :func:`fit_emission_lines`).
    ew_rest_a, ew_rest_err_a : dict of str -> ndarray, shape (...)
        Rest-frame equivalent width, Angstrom, positive for emission: flux / continuum(line centre) / (1 + z),
        the continuum being the fitted straight line of the line's complex. NaN where that continuum is <= 0.
    continuum : dict of str -> ndarray, shape (...)
        That continuum at the observed line centre, 1e-17 erg/s/cm2/A.
    instrumental_sigma_kms : dict of str -> ndarray, shape (...)
        Instrumental sigma used at each line, km/s.
    mask : dict of str -> ndarray, shape (...), int32
        MANGA_DAPPIXMASK bits: NOVALUE | DONOTUSE where the line is not measured (all values NaN); NEARBOUND
        where the group's velocity or dispersion hit the search limits (|v| = VELOCITY_LIMIT_KMS or
        sigma = SIGMA_LIMIT_KMS: usually no line, the kinematics are meaningless, the flux still holds); else 0.
    dn4000, dn4000_err : ndarray, shape (...)
        Dn4000 (Balogh et al. 1999) and its error; NaN where either band has < 50 % unmasked pixels.
    chi2_reduced : ndarray, shape (...)
        chi^2 per degree of freedom of the line fit over the unmasked pixels of all windows.
    redshift : ndarray, shape (...)
    """

    line_names: tuple[str, ...]
    flux: dict
    flux_err: dict
    velocity_kms: dict
    velocity_err_kms: dict
    dispersion_kms: dict
    dispersion_err_kms: dict
    ew_rest_a: dict
    ew_rest_err_a: dict
    continuum: dict
    instrumental_sigma_kms: dict
    mask: dict
    dn4000: np.ndarray
    dn4000_err: np.ndarray
    chi2_reduced: np.ndarray
    redshift: np.ndarray
    meta: dict = field(default_factory=dict, repr=False)
    #: Stellar velocity (relative to ``redshift``) and dispersion of the template continuum, km/s (None with
    #: ``continuum="local"``).
    stellar_velocity_kms: np.ndarray | None = None
    stellar_dispersion_kms: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape of the maps, e.g. (ny, nx) for a cube or (N,) for N spectra."""
        return self.dn4000.shape

    def _stack(self, quantity: dict) -> np.ndarray:
        return np.stack([np.asarray(quantity[name], np.float32) for name in self.line_names])

    def to_fits(self, path: str | Path, header=None) -> Path:
        """Write a MaNGA DAP-MAPS-like multi-extension FITS file.

        HDUs: PRIMARY (``header`` copied in), EMLINE_GFLUX (+_IVAR, _MASK), EMLINE_GVEL (+_IVAR, _MASK),
        EMLINE_GSIGMA (+_IVAR, _MASK; intrinsic sigma), EMLINE_INSTSIGMA, EMLINE_GEW (+_IVAR; rest frame, Angstrom),
        EMLINE_GEW_CNT, EMLINE_RCHI2 (one map), SPECINDEX (+_IVAR, _MASK; channel C01 = 'Dn4000'), and, for 2-D
        maps, STELLAR_VEL (+_MASK; zeros marked NOVALUE | DONOTUSE, this module measures no stars) and SPX_SKYCOO
        (from ``meta['spaxel_offset_arcsec']`` when known), so that :func:`galspec_hf.data.read_manga_maps` reads
        the file. The celestial WCS is ``meta['wcs_header']`` (the cube's); without it a placeholder TAN WCS at
        (0, 0) is written and flagged with ``WCSPLACE = T``. Line arrays have shape (n_lines, ...) with channel
        names C01.. in the DAP's convention (``'Ha-6564'``, see :data:`DAP_CHANNEL_NAMES`); IVAR = 1 / err^2
        (0 where the error is not finite). Units in BUNIT as in the DAP (flux 1E-17 erg/s/cm^2/spaxel). A last
        HDU REDSHIFT holds the redshift of every spectrum.
        """
        from astropy.io import fits  # noqa: PLC0415

        from ..io.manga import spaxel_wcs_header, write_manga_maps  # noqa: PLC0415

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        channels = [DAP_CHANNEL_NAMES[name] for name in self.line_names]
        wcs_header = self.meta.get("wcs_header")
        if wcs_header is None and len(self.shape) == 2:
            # no sky position known: a placeholder TAN WCS on 0.5" spaxels at (0, 0), flagged in WCSPLACE, so that
            # readers requiring a celestial WCS (read_manga_maps) accept the file
            ny, nx = self.shape
            wcs_header = spaxel_wcs_header(fits.Header(), 0.0, 0.0, nx, ny, C.MANGA_SPAXEL_ARCSEC)
            wcs_header["WCSPLACE"] = (True, "placeholder WCS: sky position unknown")
        primary = fits.Header() if header is None else fits.Header(header)
        primary["AUTHOR"] = "galspec_hf.analysis.lines"
        primary["LINEFIT"] = ("Gaussian; v tied: Balmer, forbidden", "docs/LINES.md")
        no_value = (1 << C.DAP_MASK_NOVALUE_BIT) | (1 << C.DAP_MASK_DONOTUSE_BIT)

        def finite(data) -> np.ndarray:
            """Float maps as float32 with 0 where not finite (the DAP's convention); other maps as given."""
            data = np.asarray(data)
            return np.where(np.isfinite(data), data, 0.0).astype(np.float32) if data.dtype.kind == "f" else data

        def ivar(err: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):
                return finite(1.0 / np.asarray(err, np.float64) ** 2)

        maps = {}
        mask = np.stack([self.mask[name] for name in self.line_names]).astype(np.int32)
        if len(self.shape) == 2:
            offsets = self.meta.get("spaxel_offset_arcsec")
            if offsets is None:
                ny, nx = self.shape
                y, x = np.mgrid[0:ny, 0:nx]
                offsets = np.stack([-(x - (nx - 1) / 2.0), y - (ny - 1) / 2.0], axis=-1) * C.MANGA_SPAXEL_ARCSEC
            skycoo = np.moveaxis(np.asarray(offsets, np.float32), -1, 0)
            maps["SPX_SKYCOO"] = (skycoo, "arcsec", ("On-sky X", "On-sky Y"))
            maps["STELLAR_VEL"] = (np.zeros(self.shape, np.float32), "km/s", None)
            maps["STELLAR_VEL_MASK"] = (np.full(self.shape, no_value, np.int32), None, None)
        flux_unit = "1E-17 erg/s/cm^2/spaxel"
        for name, values, errors, unit in (
            ("EMLINE_GFLUX", self.flux, self.flux_err, flux_unit),
            ("EMLINE_GVEL", self.velocity_kms, self.velocity_err_kms, "km/s"),
            ("EMLINE_GSIGMA", self.dispersion_kms, self.dispersion_err_kms, "km/s"),
        ):
            maps[name] = (finite(self._stack(values)), unit, channels)
            maps[f"{name}_IVAR"] = (ivar(self._stack(errors)), f"({unit})^{{-2}}", channels)
            maps[f"{name}_MASK"] = (mask, None, channels)
            if name == "EMLINE_GSIGMA":
                maps["EMLINE_INSTSIGMA"] = (finite(self._stack(self.instrumental_sigma_kms)), "km/s", channels)
        maps["EMLINE_GEW"] = (finite(self._stack(self.ew_rest_a)), "ang", channels)
        maps["EMLINE_GEW_IVAR"] = (ivar(self._stack(self.ew_rest_err_a)), "(ang)^{-2}", channels)
        maps["EMLINE_GEW_MASK"] = (mask, None, channels)
        maps["EMLINE_GEW_CNT"] = (finite(self._stack(self.continuum)), "1E-17 erg/s/cm^2/ang/spaxel", channels)
        maps["EMLINE_RCHI2"] = (finite(self.chi2_reduced), None, None)
        dn_mask = np.where(np.isfinite(self.dn4000), 0, no_value).astype(np.int32)[None]
        maps["SPECINDEX"] = (finite(self.dn4000[None]), "", ("Dn4000",))
        maps["SPECINDEX_IVAR"] = (ivar(self.dn4000_err)[None], "", ("Dn4000",))
        maps["SPECINDEX_MASK"] = (dn_mask, None, ("Dn4000",))
        redshift = {"REDSHIFT": np.asarray(self.redshift, np.float64)}
        return write_manga_maps(path, maps, wcs_header=wcs_header, primary_header=primary, extra_hdus=redshift)

    def plot(self, path: str | Path, lines: tuple[str, ...] = ("Halpha", "Hbeta", "NII_6585", "OIII_5008")) -> Path:
        """Write a PNG grid of 2-D maps: flux of ``lines``, then H-alpha velocity, dispersion and EW, and Dn4000.

        Raises ValueError when the maps are not 2-D (a cube's (ny, nx)).
        """
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        if len(self.shape) != 2:
            raise ValueError(f"plot needs 2-D maps (a cube), got maps of shape {self.shape}")
        panels = [(f"{DAP_CHANNEL_NAMES[n]} flux [1e-17 erg/s/cm2]", self.flux[n], "viridis", True) for n in lines]
        panels += [
            ("Ha-6564 velocity [km/s]", self.velocity_kms["Halpha"], "RdBu_r", False),
            ("Ha-6564 sigma [km/s]", self.dispersion_kms["Halpha"], "magma", False),
            ("Ha-6564 EW rest [A]", self.ew_rest_a["Halpha"], "viridis", True),
            ("Dn4000", self.dn4000, "cividis", False),
        ]
        ncol = 4
        nrow = math.ceil(len(panels) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), squeeze=False)
        for ax, (title, data, cmap, positive) in zip(axes.ravel(), panels, strict=False):
            data = np.asarray(data, float)
            finite = data[np.isfinite(data)]
            if positive:
                finite = finite[finite > 0]
            vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
            if cmap == "RdBu_r":
                vmax = max(abs(vmin), abs(vmax), 1.0)
                vmin = -vmax
            image = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes.ravel()[len(panels) :]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


# ----------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------
def _instrumental_sigma_per_pixel(wavelength, instrumental_sigma_kms, spectral_resolution) -> np.ndarray:
    if instrumental_sigma_kms is not None and spectral_resolution is not None:
        raise ValueError("give instrumental_sigma_kms or spectral_resolution, not both")
    if spectral_resolution is not None:
        resolution = np.broadcast_to(np.asarray(spectral_resolution, float), wavelength.shape)
        if not np.all(np.isfinite(resolution)) or np.any(resolution <= 0):
            raise ValueError("spectral_resolution must be positive and finite (R = lambda / FWHM), shape () or (L,)")
        return resolution_to_sigma_kms(resolution)
    if instrumental_sigma_kms is None:
        return default_instrumental_sigma_kms(wavelength)
    sigma = np.asarray(instrumental_sigma_kms, float)
    try:
        sigma = np.broadcast_to(sigma, wavelength.shape)
    except ValueError as error:
        raise ValueError(f"instrumental_sigma_kms must have shape () or (L,) = {wavelength.shape}") from error
    if not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise ValueError("instrumental_sigma_kms must be finite and >= 0")
    return sigma.astype(float)


# ----------------------------------------------------------------------------------------
# The fit
# ----------------------------------------------------------------------------------------
class _Chunk:
    """Pixels of the line windows of n spectra, gathered into (n, P) arrays, plus the model and its derivatives."""

    def __init__(self, wavelength, edges, sigma_inst_pix, flux, weight, redshift, balmer_absorption=True,
                 baseline=True, dispersion_groups=None):  # fmt: skip
        n = flux.shape[0]
        self.n = n
        # the non-linear parameters theta: v of each kinematic group, then sigma^2 of each dispersion group
        self.dispersion_groups = KINEMATIC_GROUPS if dispersion_groups is None else dispersion_groups
        q_index = {line: i for i, group in enumerate(self.dispersion_groups.values()) for line in group}
        self.n_nonlin = _N_VEL + len(self.dispersion_groups)
        self.v_column = [_GROUP_INDEX[members[0][0]] for _, _, members in _COMPONENTS]  # per component
        self.q_column = [_N_VEL + q_index[members[0][0]] for _, _, members in _COMPONENTS]
        self.redshift = redshift
        one_plus_z = 1.0 + redshift
        blocks, index_list, valid_list = {}, [], []
        # each block's pixel edges, (n, width + 1): pixel j spans block_edges[:, j] .. block_edges[:, j + 1] (exact
        # for every valid pixel), so a profile's cumulative integral is evaluated once per edge, not twice
        self.block_edges = {}
        start_col = 0
        for name in _COMPLEXES:
            lo, hi = COMPLEX_WINDOWS_REST_A[name]
            first = np.searchsorted(wavelength, lo * one_plus_z)
            stop = np.searchsorted(wavelength, hi * one_plus_z)
            width = max(int((stop - first).max()), 1)
            idx = first[:, None] + np.arange(width)[None]
            valid = idx < stop[:, None]
            self.block_edges[name] = edges[np.clip(first[:, None] + np.arange(width + 1)[None], 0, wavelength.size)]
            idx = np.clip(idx, 0, wavelength.size - 1)
            blocks[name] = slice(start_col, start_col + width)
            index_list.append(idx)
            valid_list.append(valid)
            start_col += width
        self.blocks = blocks
        idx = np.concatenate(index_list, axis=1)
        valid = np.concatenate(valid_list, axis=1)
        self.index, self.valid = idx, valid  # (n, P) each column's pixel on the spectrum, and whether it is one
        rows = np.arange(n)[:, None]
        self.wave = wavelength[idx]
        self.dlam = edges[idx + 1] - edges[idx]
        self.y = np.where(valid, flux[rows, idx], 0.0)
        self.w = np.where(valid, weight[rows, idx], 0.0)
        # expected observed centres (v = 0) and instrumental sigma of every line
        self.centre0 = {name: _LINES[name] * one_plus_z for name in LINE_NAMES}
        self.sigma_inst = {
            name: np.interp(self.centre0[name], wavelength, sigma_inst_pix) for name in LINE_NAMES
        }  # (n,) km/s
        # fixed design columns: continuum of each complex
        self.base = np.zeros((n, self.y.shape[1], _N_LIN))
        self.cont_ref = {}
        for c, name in enumerate(_COMPLEXES):
            sl = blocks[name]
            lo, hi = COMPLEX_WINDOWS_REST_A[name]
            ref = 0.5 * (lo + hi) * one_plus_z
            self.cont_ref[name] = ref
            self.base[:, sl, _I_CONT + 2 * c] = 1.0
            self.base[:, sl, _I_CONT + 2 * c + 1] = (self.wave[:, sl] - ref[:, None]) / _CONT_SLOPE_SCALE_A
        if balmer_absorption:
            for j, (line, cplx) in enumerate(_ABSORPTION):
                sl = blocks[cplx]
                mu = _LINES[line] * one_plus_z
                s_kms = np.hypot(BALMER_ABSORPTION_SIGMA_KMS, np.interp(mu, wavelength, sigma_inst_pix))
                integral, _ = self.pixel_integral(cplx, mu, mu * s_kms / _C_KMS)
                self.base[:, sl, _N_COMP + j] = -integral / self.dlam[:, sl]  # positive = absorption
        if not baseline:  # template continuum already subtracted: no local baseline (dead columns, zero step)
            self.base[..., _I_CONT:] = 0.0
        self.base *= (self.w > 0)[..., None]
        # coverage of each line and window
        good = self.w > 0
        self.window_ok = {name: good[:, blocks[name]].sum(axis=1) >= _MIN_WINDOW_PIXELS for name in _COMPLEXES}
        self.line_ok = {}
        for _, cplx, members in _COMPONENTS:
            sl = blocks[cplx]
            for line, _ in members:
                half = self.centre0[line] * _LINE_CORE_KMS / _C_KMS
                near = np.abs(self.wave[:, sl] - self.centre0[line][:, None]) <= half[:, None]
                core = (near & good[:, sl]).sum(axis=1) >= _MIN_CORE_PIXELS
                self.line_ok[line] = core & self.window_ok[cplx]
        # a fitted component is constrained when its main line (the first member) is covered
        self.comp_ok = np.stack([self.line_ok[members[0][0]] for _, _, members in _COMPONENTS], axis=1)
        # the fixed columns of each complex on its own pixels, (n, P_block, K_block), for solve_linear_blocks
        self.base_blocks = {name: self.base[:, blocks[name]][:, :, _COMPLEX_COLUMNS[name]] for name in _COMPLEXES}

    def pixel_integral(self, cplx: str, mu: np.ndarray, s: np.ndarray):
        """A unit-flux Gaussian of centre `mu` and sigma `s` (n,) Angstrom, integrated over each pixel of complex
        `cplx`'s block (divide by ``dlam`` for the flux density): (integral (n, P_block), z (n, P_block + 1): the
        pixel edges in sigma)."""
        z = (self.block_edges[cplx] - mu[:, None]) / s[:, None]
        cdf = ndtr(z)
        return cdf[:, 1:] - cdf[:, :-1], z

    def component_column(self, k: int, theta: np.ndarray, jacobian: bool):
        """Column of line component k on its complex's pixels, (n, P_block), at kinematics ``theta`` (n,
        n_nonlin), zero at unused pixels; with `jacobian`, also its derivatives in v (km/s) and q = sigma^2
        ((km/s)^2)."""
        _, cplx, members = _COMPONENTS[k]
        inv_c = 1.0 / _C_KMS
        sl = self.blocks[cplx]
        dlam = self.dlam[:, sl]
        col = np.zeros_like(dlam)
        d_v = np.zeros_like(dlam) if jacobian else None
        d_q = np.zeros_like(dlam) if jacobian else None
        v = theta[:, self.v_column[k]]
        q = theta[:, self.q_column[k]]
        for line, ratio in members:
            mu0 = self.centre0[line]
            mu = mu0 * (1.0 + v * inv_c)
            s2_kms = np.maximum(q + self.sigma_inst[line] ** 2, 1.0)
            s_kms = np.sqrt(s2_kms)
            s = mu * s_kms * inv_c
            integral, z = self.pixel_integral(cplx, mu, s)
            col += ratio * integral / dlam
            if jacobian:
                pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
                a, b, pa, pb = z[:, :-1], z[:, 1:], pdf[:, :-1], pdf[:, 1:]
                dp_dmu = -(pb - pa) / (s[:, None] * dlam)
                dp_ds = -(b * pb - a * pa) / (s[:, None] * dlam)
                dmu_dv = mu0 * inv_c
                ds_dv = s / mu * dmu_dv
                ds_dq = mu * inv_c / (2.0 * s_kms)
                d_v += ratio * (dp_dmu * dmu_dv[:, None] + dp_ds * ds_dv[:, None])
                d_q += ratio * dp_ds * ds_dq[:, None]
        return col * (self.w[:, sl] > 0), d_v, d_q

    def design(self, theta: np.ndarray, jacobian: bool):
        """Design matrix B (n, P, K) at ``theta`` (n, n_nonlin) and, if asked, dB/dtheta of the line columns.

        Returns B and a list of (k, block slice, dB_k/dv, dB_k/dq), each derivative (n, P_block) on the block of
        component k's complex (v in km/s, q = sigma^2 in (km/s)^2).
        """
        design = self.base.copy()
        derivs = []
        for k, (_, cplx, _) in enumerate(_COMPONENTS):
            sl = self.blocks[cplx]
            design[:, sl, k], d_v, d_q = self.component_column(k, theta, jacobian)
            if jacobian:
                derivs.append((k, sl, d_v, d_q))
        return design, derivs

    def solve_linear_blocks(self, theta: np.ndarray):
        """Weighted least squares for the amplitudes at fixed kinematics ``theta`` (n, n_nonlin): (alpha (n, K),
        chi2 (n,)).

        Solved one complex at a time (at fixed kinematics its normal equations are independent of the others'),
        without building the whole design matrix."""
        alpha = np.zeros((self.n, _N_LIN))
        chi2 = np.zeros(self.n)
        for name in _COMPLEXES:
            sl, columns = self.blocks[name], _COMPLEX_COLUMNS[name]
            block = self.base_blocks[name].copy()  # (n, P_block, K_block)
            for position, k in enumerate(columns):
                if k < _N_COMP:
                    block[:, :, position] = self.component_column(k, theta, jacobian=False)[0]
            w, y = self.w[:, sl], self.y[:, sl]
            bw = (block * w[..., None]).transpose(0, 2, 1)
            a = _solve_scaled(bw @ block, (bw @ y[..., None])[..., 0])
            resid = y - (block @ a[..., None])[..., 0]
            chi2 += (w * resid**2).sum(axis=1)
            alpha[:, columns] = a
        return alpha, chi2

    def line_model(self, params: np.ndarray, length: int) -> np.ndarray:
        """The fitted emission lines alone (no baseline, no troughs) on the whole spectrum, (n, length): fitted
        parameters `params` (n, n_nonlin + K) evaluated on the complexes' pixels, zero elsewhere and at unused
        pixels."""
        theta, alpha = params[:, : self.n_nonlin], params[:, self.n_nonlin :]
        design, _ = self.design(theta, jacobian=False)
        lines = (design[..., :_N_COMP] @ alpha[:, :_N_COMP, None])[..., 0]  # (n, P)
        out = np.zeros((self.n, length))
        rows = np.broadcast_to(np.arange(self.n)[:, None], self.index.shape)
        np.add.at(out, (rows[self.valid], self.index[self.valid]), lines[self.valid])
        return out

    def full_jacobian(self, theta, alpha):
        design, derivs = self.design(theta, jacobian=True)
        jac_nl = np.zeros(design.shape[:2] + (self.n_nonlin,))
        for k, sl, d_v, d_q in derivs:
            jac_nl[:, sl, self.v_column[k]] += alpha[:, k, None] * d_v
            jac_nl[:, sl, self.q_column[k]] += alpha[:, k, None] * d_q
        jac_nl *= (self.w > 0)[..., None]
        model = (design @ alpha[..., None])[..., 0]
        return np.concatenate([jac_nl, design], axis=2), model


def _solve_scaled(normal: np.ndarray, rhs: np.ndarray, damping=None) -> np.ndarray:
    """Solve batched normal equations (n, K, K) x = (n, K) after Jacobi scaling, optionally Marquardt-damped.

    Parameters that the data do not touch (zero diagonal) get a zero step; scaling makes parameters of very
    different units (km/s, (km/s)^2, flux) equally well conditioned.
    """
    diag = np.einsum("nkk->nk", normal)
    dead = diag <= 1e-30 * np.maximum(diag.max(axis=1, keepdims=True), 1e-300)
    d = np.where(dead, 1.0, np.sqrt(np.where(dead, 1.0, diag)))
    scaled = normal / (d[:, :, None] * d[:, None, :])
    scaled = np.where(dead[:, :, None] | dead[:, None, :], 0.0, scaled)
    idx = np.arange(normal.shape[1])
    scaled[:, idx, idx] = 1.0 + (0.0 if damping is None else damping[:, None])
    right = (np.where(dead, 0.0, rhs) / d)[..., None]
    try:
        step = np.linalg.solve(scaled, right)[..., 0]
    except np.linalg.LinAlgError:
        # exactly collinear columns (e.g. two lines whose cores are masked, seen only through their far tails on the
        # same few pixels; such lines are reported NaN anyway): the minimum-norm solution instead of a crash
        step = (np.linalg.pinv(scaled, hermitian=True) @ right)[..., 0]
    return step / d


def _clip_theta(theta: np.ndarray, q_min: np.ndarray, q_max: np.ndarray) -> np.ndarray:
    theta = theta.copy()
    theta[:, :_N_VEL] = np.clip(theta[:, :_N_VEL], -VELOCITY_LIMIT_KMS, VELOCITY_LIMIT_KMS)
    theta[:, _N_VEL:] = np.clip(theta[:, _N_VEL:], q_min, q_max)
    return theta


def _fit_chunk(chunk: _Chunk, n_iter: int, rescale_errors: bool = True, start=None, q_bounds=None):
    """Fit the spectra of `chunk`: a grid search then Levenberg-Marquardt, or only the latter from `start` (n,
    n_nonlin + K parameters). `q_bounds`: (q_min, q_max), each (n, number of dispersion groups), the range of
    sigma^2 ((km/s)^2); default [0, SIGMA_LIMIT_KMS^2]. Returns (params, cov, chi2 / dof, q_min)."""
    n, n_nonlin, n_q = chunk.n, chunk.n_nonlin, chunk.n_nonlin - _N_VEL
    # no line narrower than the instrument (q = sigma^2 >= 0): allowing sigma_total < sigma_inst let low-S/N fits
    # latch onto single noisy pixels (H-alpha flux pulls of std 1.6 instead of 1.4 at S/N 3)
    q_min, q_max = (np.zeros((n, n_q)), np.full((n, n_q), SIGMA_LIMIT_KMS**2)) if q_bounds is None else q_bounds
    if start is None:
        # 1. grid search over a shared (v, sigma)
        best_chi2 = np.full(n, np.inf)
        theta = np.zeros((n, n_nonlin))
        alpha = np.zeros((n, _N_LIN))
        for sigma in _GRID_SIGMA_KMS:
            for v in _GRID_VELOCITY_KMS:
                trial = np.concatenate([np.full((n, _N_VEL), v), np.full((n, n_q), sigma**2)], axis=1)
                a, chi2 = chunk.solve_linear_blocks(trial)
                better = chi2 < best_chi2
                best_chi2 = np.where(better, chi2, best_chi2)
                theta[better] = trial[better]
                alpha[better] = a[better]
        params = np.concatenate([theta, alpha], axis=1)
    else:
        params = np.array(start, dtype=np.float64)
        params[:, :n_nonlin] = _clip_theta(params[:, :n_nonlin], q_min, q_max)
        theta, alpha = params[:, :n_nonlin], params[:, n_nonlin:]
    # 2. Levenberg-Marquardt on all parameters
    jac, model = chunk.full_jacobian(theta, alpha)
    chi2 = (chunk.w * (chunk.y - model) ** 2).sum(axis=1)
    damping = np.full(n, 1e-2)
    for _ in range(n_iter):
        jw = (jac * chunk.w[..., None]).transpose(0, 2, 1)
        grad = (jw @ (chunk.y - model)[..., None])[..., 0]
        step = _solve_scaled(jw @ jac, grad, damping)
        trial = params + step
        trial[:, :n_nonlin] = _clip_theta(trial[:, :n_nonlin], q_min, q_max)
        t_jac, t_model = chunk.full_jacobian(trial[:, :n_nonlin], trial[:, n_nonlin:])
        t_chi2 = (chunk.w * (chunk.y - t_model) ** 2).sum(axis=1)
        accept = t_chi2 <= chi2
        params = np.where(accept[:, None], trial, params)
        jac = np.where(accept[:, None, None], t_jac, jac)
        model = np.where(accept[:, None], t_model, model)
        chi2 = np.where(accept, t_chi2, chi2)
        damping = np.clip(np.where(accept, damping / 3.0, damping * 4.0), 1e-7, 1e7)
    hess = (jac * chunk.w[..., None]).transpose(0, 2, 1) @ jac
    # covariance: pseudo-inverse of the scaled Hessian (parameters the data cannot constrain drop out)
    diag = np.sqrt(np.maximum(np.einsum("nkk->nk", hess), 1e-300))
    scaled = hess / (diag[:, :, None] * diag[:, None, :])
    cov = np.linalg.pinv(scaled, rcond=1e-10, hermitian=True) / (diag[:, :, None] * diag[:, None, :])
    n_good = (chunk.w > 0).sum(axis=1)
    dof = np.maximum(n_good - (params.shape[1]), 1)
    rchi2 = chi2 / dof
    if rescale_errors:
        # errors x sqrt(max(1, reduced chi^2)) of the complex each parameter belongs to (all windows for the
        # kinematics): a model that misses structure (e.g. stellar absorption features) does not claim
        # ivar-limited errors. Where the model is adequate (chi^2/dof ~ 1) this leaves the errors unchanged.
        factor = np.ones_like(params)
        factor[:, :n_nonlin] = np.sqrt(np.maximum(rchi2, 1.0))[:, None]
        resid2 = chunk.w * (chunk.y - model) ** 2
        for cplx in _COMPLEXES:
            sl = chunk.blocks[cplx]
            columns = list(n_nonlin + _COMPLEX_COLUMNS[cplx])
            dof_c = np.maximum((chunk.w[:, sl] > 0).sum(axis=1) - len(columns) - 2, 1)
            factor[:, columns] = np.sqrt(np.maximum(resid2[:, sl].sum(axis=1) / dof_c, 1.0))[:, None]
        cov = cov * factor[:, :, None] * factor[:, None, :]
    return params, cov, rchi2, q_min


def fit_emission_lines(
    wavelength,
    flux,
    ivar,
    redshift,
    *,
    mask=None,
    spectral_axis: int = -1,
    instrumental_sigma_kms=None,
    spectral_resolution=None,
    balmer_absorption: bool = True,
    rescale_errors: bool = True,
    continuum: str = "template",
    continuum_degree: int = 8,
    chunk_size: int = 256,
    n_iter: int = 25,
    progress: bool = False,
    meta: dict | None = None,
    num_threads: int | None = None,
    dispersions: str = "tied",
    continuum_refit: str = "same",
    templates=None,
) -> LineMaps:
    """Fit emission lines and measure Dn4000 in every spectrum at once.

    Parameters
    ----------
    wavelength : array, shape (L,)
        Observed-frame vacuum wavelengths, Angstrom, increasing.
    flux, ivar : array, shape (..., L)
        Flux density in 1e-17 erg/s/cm2/A and its inverse variance; any leading shape: (L,), (N, L), (ny, nx, L).
        With ``spectral_axis=0`` MaNGA's (L, ny, nx) layout is accepted too.
    redshift : float or array, shape broadcastable to (...)
        Redshift of each spectrum; velocities are measured relative to it.
    mask : array of int or bool, shape like ``flux``, optional
        Nonzero pixels are ignored (as are pixels with ivar <= 0 or non-finite flux/ivar).
    spectral_axis : int
        Axis of ``flux``/``ivar``/``mask`` holding wavelength (default -1).
    instrumental_sigma_kms : float or array (L,), optional
        Instrumental Gaussian sigma, km/s, at each pixel. Default: MaNGA's
        (:func:`default_instrumental_sigma_kms`); for DESI spectra use :func:`desi_instrumental_sigma_kms`.
        Exclusive with ``spectral_resolution``.
    spectral_resolution : float or array (L,), optional
        R = lambda / FWHM at each pixel (e.g. a LOGCUBE's SPECRES).
    balmer_absorption : bool
        With ``continuum="local"`` only: fit a broad Gaussian absorption trough under H-alpha and H-beta (fixed
        width, see :data:`BALMER_ABSORPTION_SIGMA_KMS`) as a stand-in for the stellar Balmer absorption.
    continuum : {"template", "local", "none"}
        ``"template"`` (default): first fit a stellar continuum of MILES-HC templates and an additive Legendre
        polynomial over the whole spectrum (:func:`galspec_hf.analysis.continuum.fit_stellar_continuum`), then
        the lines on the residual with the continuum's variance added to each pixel's (no local baseline, as in
        the DAP's Sasuke). ``"local"``: only the straight line per complex (plus the Balmer troughs), about 8x
        faster. Which to use where (old populations, smooth simulated continua): docs/LINES.md, "Which mode".
        ``"none"``: the lines alone, on spectra whose continuum has been subtracted already (e.g. another fitter's
        stellar continuum); no baseline, no troughs, equivalent widths NaN.
    continuum_refit : {"same", "sasuke", "off"}
        Template mode only: after the first line fit, refit the continuum (same kinematics) on the spectrum minus the
        fitted lines with the windows of the fitted lines unmasked, then refit the lines from the first solution, so
        that the absorption under the lines is constrained by the pixels around them, as in the DAP's joint fit.
        ``"same"`` (default; about 15 % more time on a cube): with the first fit's templates and polynomial.
        ``"sasuke"``: as the DAP's Sasuke (:data:`SASUKE_REFIT`): the whole library and no additive polynomial; it
        reproduces the DAP's fluxes on real MaNGA spectra but, like the DAP, biases star-forming H-beta low on
        synthetic spectra, and is about 1.4x slower (docs/LINES.md). ``"off"``: the masked-window fit alone.
    continuum_degree : int
        Degree of the additive Legendre polynomial of the template continuum (default 8).
    templates : :class:`~galspec_hf.analysis.continuum.ContinuumTemplates`, optional
        Template mode: the stellar library; default the shipped MILES-HC
        (:func:`~galspec_hf.analysis.continuum.load_continuum_templates`). Another library, e.g. FSPS SSPs through
        :func:`~galspec_hf.analysis.continuum.ssp_continuum_templates`, for spectra it matches better.
    rescale_errors : bool
        Multiply the ivar-propagated errors by sqrt(max(1, chi^2/dof)) of each line complex (of all windows for
        velocities and dispersions), so that a poor continuum model (stellar features) inflates them. False gives
        the pure ivar propagation.
    chunk_size : int
        Spectra fitted together (memory ~ chunk_size x 400 pixels x 24 parameters x 8 bytes x a few).
    num_threads : int, optional
        Chunks fitted at once, in threads (numpy and scipy release the GIL in the array work). Default: the CPU
        cores this process may use, at most 4. The result does not depend on it.
    n_iter : int
        Levenberg-Marquardt iterations after the grid search.
    dispersions : {"tied", "free", "auto"}
        ``"tied"``: one intrinsic dispersion per kinematic group (:data:`KINEMATIC_GROUPS`). ``"free"``: after that
        fit, each line (a doublet together, :data:`FREE_DISPERSION_GROUPS`) refitted with its own dispersion,
        within a factor :data:`DISPERSION_TIE_FACTOR` of its group's tied one (as the MaNGA DAP's ELPMPL11 bounds
        each line's to H-alpha's). ``"auto"``: free in the spectra whose strongest line has S/N >=
        :data:`FREE_DISPERSION_MIN_SNR` in the tied fit, tied elsewhere.
    progress : bool
        Show a tqdm progress bar over chunks.
    meta : dict, optional
        Stored in ``LineMaps.meta`` (e.g. ``wcs_header``, ``spaxel_offset_arcsec`` for :meth:`LineMaps.to_fits`).

    Returns
    -------
    LineMaps
        Maps with the leading shape (...) of the spectra.

    Raises
    ------
    ValueError
        Naming the argument whose shape or values are wrong.
    """
    wavelength = np.asarray(wavelength, np.float64)
    if wavelength.ndim != 1 or wavelength.size < 2:
        raise ValueError(f"wavelength must be 1-D with >= 2 pixels, got shape {wavelength.shape}")
    if not np.all(np.diff(wavelength) > 0):
        raise ValueError("wavelength must be strictly increasing (observed-frame vacuum Angstrom)")
    flux = np.moveaxis(np.asarray(flux), spectral_axis, -1)  # views; converted to float64 chunk by chunk
    ivar = np.moveaxis(np.asarray(ivar), spectral_axis, -1)
    if flux.shape[-1] != wavelength.size:
        raise ValueError(f"flux must have {wavelength.size} pixels on spectral_axis, got shape {flux.shape}")
    if ivar.shape != flux.shape:
        raise ValueError(f"ivar must have the shape of flux {flux.shape}, got {ivar.shape}")
    if mask is not None:
        mask = np.moveaxis(np.asarray(mask), spectral_axis, -1)
        if mask.shape != flux.shape:
            raise ValueError(f"mask must have the shape of flux {flux.shape}, got {mask.shape}")
    lead = flux.shape[:-1]
    try:
        z = np.broadcast_to(np.asarray(redshift, np.float64), lead)
    except ValueError as error:
        raise ValueError(f"redshift must be a scalar or broadcastable to {lead}, got {np.shape(redshift)}") from error
    if not np.all(np.isfinite(z)) or np.any(z <= -1):
        raise ValueError("redshift must be finite and > -1")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if continuum not in CONTINUUM_MODES:
        raise ValueError(f"continuum must be one of {CONTINUUM_MODES}, got {continuum!r}")
    if dispersions not in DISPERSION_MODES:
        raise ValueError(f"dispersions must be one of {DISPERSION_MODES}, got {dispersions!r}")
    if continuum_refit not in CONTINUUM_REFIT_MODES:
        raise ValueError(f"continuum_refit must be one of {CONTINUUM_REFIT_MODES}, got {continuum_refit!r}")
    sigma_inst_pix = _instrumental_sigma_per_pixel(wavelength, instrumental_sigma_kms, spectral_resolution)
    edges = pixel_edges(wavelength)

    n_spec = int(np.prod(lead, dtype=np.int64))
    flux2 = flux.reshape(n_spec, -1)
    ivar2 = ivar.reshape(n_spec, -1)
    mask2 = None if mask is None else mask.reshape(n_spec, -1)
    z1 = z.reshape(n_spec)
    dn, dn_err = np.full(n_spec, np.nan), np.full(n_spec, np.nan)

    per_line = {key: {name: np.full(n_spec, np.nan) for name in LINE_NAMES} for key in _PER_LINE_KEYS}
    masks = {name: np.zeros(n_spec, np.int32) for name in LINE_NAMES}
    chi2_reduced = np.full(n_spec, np.nan)
    stellar_v, stellar_sigma = np.full(n_spec, np.nan), np.full(n_spec, np.nan)
    no_value = (1 << C.DAP_MASK_NOVALUE_BIT) | (1 << C.DAP_MASK_DONOTUSE_BIT)
    # spectra without a single usable pixel (e.g. outside an IFU's footprint) are not fitted: NaN, NOVALUE
    usable = np.zeros(n_spec, bool)
    for start in range(0, n_spec, 4096):
        block = slice(start, start + 4096)
        ok = np.isfinite(flux2[block]) & np.isfinite(ivar2[block]) & (ivar2[block] > 0)
        if mask2 is not None:
            ok &= mask2[block] == 0
        usable[block] = ok.any(axis=1)
    for name in LINE_NAMES:
        masks[name][~usable] = no_value
    fit_index = np.flatnonzero(usable)
    if num_threads is None:
        num_threads = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 4)
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")

    def fit_chunk_at(start: int) -> None:  # fits spectra fit_index[start : start + chunk_size], writes their rows
        sl = fit_index[start : start + chunk_size]
        flux_c = np.asarray(flux2[sl], np.float64)
        ivar_c = np.asarray(ivar2[sl], np.float64)
        good = np.isfinite(flux_c) & np.isfinite(ivar_c) & (ivar_c > 0)
        if mask2 is not None:
            good &= mask2[sl] == 0
        flux_c = np.where(good, flux_c, 0.0)
        ivar_c = np.where(good, ivar_c, 0.0)
        dn[sl], dn_err[sl] = dn4000(wavelength, flux_c, ivar_c, z1[sl])
        cont_at_line = None
        use_troughs = balmer_absorption and continuum == "local"
        if continuum == "template":
            # 1. the stellar continuum with every line window masked, 2. the lines on the residual, 3. the continuum
            # refitted (same templates and kinematics) on the spectrum minus those lines with their windows unmasked,
            # 4. the lines refitted on the new residual (see the module docstring)
            line_flux, line_ivar, cont_at_line, fits = _subtract_stellar_continuum(
                wavelength, flux_c, ivar_c, z1[sl], sigma_inst_pix, continuum_degree, templates=templates
            )
            for fit, ss in fits:
                stellar_v[sl[ss]], stellar_sigma[sl[ss]] = fit.velocity_kms, fit.dispersion_kms
            chunk = _Chunk(wavelength, edges, sigma_inst_pix, line_flux, line_ivar, z1[sl], False, False)
            params, cov, rchi2, _ = _fit_chunk(chunk, n_iter, rescale_errors)
            if continuum_refit != "off":
                emission = chunk.line_model(params, wavelength.size)
                refit = SASUKE_REFIT if continuum_refit == "sasuke" else None
                line_flux, line_ivar, cont_at_line, _ = _subtract_stellar_continuum(
                    wavelength, flux_c, ivar_c, z1[sl], sigma_inst_pix, continuum_degree, emission, fits, refit,
                    templates=templates,
                )
                chunk = _Chunk(wavelength, edges, sigma_inst_pix, line_flux, line_ivar, z1[sl], False, False)
                params, cov, rchi2, _ = _fit_chunk(chunk, n_iter, rescale_errors, start=params)
            flux_c, ivar_c = line_flux, line_ivar
        else:
            baseline = continuum == "local"
            chunk = _Chunk(wavelength, edges, sigma_inst_pix, flux_c, ivar_c, z1[sl], use_troughs, baseline)
            params, cov, rchi2, _ = _fit_chunk(chunk, n_iter, rescale_errors)
        has_data = (chunk.w > 0).sum(axis=1) > 0
        chi2_reduced[sl] = np.where(has_data, rchi2, np.nan)
        _collect(chunk, params, cov, per_line, masks, sl, no_value, cont_at_line)
        if dispersions == "tied":
            return
        # refit with free dispersions, from the tied solution, where asked (overwrites those spectra's rows)
        strong = _strongest_line_snr(chunk, params, cov) >= FREE_DISPERSION_MIN_SNR
        free = has_data & (strong | (dispersions == "free"))
        if not free.any():
            return
        rows = np.flatnonzero(free)
        free_chunk = _Chunk(wavelength, edges, sigma_inst_pix, flux_c[rows], ivar_c[rows], z1[sl][rows], use_troughs,
                            continuum == "local", dispersion_groups=FREE_DISPERSION_GROUPS)  # fmt: skip
        start, q_bounds = _free_dispersion_start(chunk, free_chunk, params[rows])
        params, cov, rchi2, _ = _fit_chunk(free_chunk, n_iter, rescale_errors, start=start, q_bounds=q_bounds)
        chi2_reduced[sl[rows]] = rchi2
        at_lines = None if cont_at_line is None else {line: c[rows] for line, c in cont_at_line.items()}
        _collect(free_chunk, params, cov, per_line, masks, sl[rows], no_value, at_lines)

    starts = range(0, fit_index.size, chunk_size)
    with ThreadPoolExecutor(max(1, min(num_threads, len(starts)))) as pool:
        done = pool.map(fit_chunk_at, starts)
        if progress:
            from tqdm.auto import tqdm  # noqa: PLC0415

            done = tqdm(done, total=len(starts), desc="line fit", unit="chunk")
        for _ in done:  # the chunks write disjoint rows; an error in one is raised here
            pass

    def shaped(a):
        return a.reshape(lead)

    return LineMaps(
        line_names=LINE_NAMES,
        **{key: {name: shaped(per_line[key][name]) for name in LINE_NAMES} for key in _PER_LINE_KEYS},
        mask={name: shaped(masks[name]) for name in LINE_NAMES},
        dn4000=shaped(dn),
        dn4000_err=shaped(dn_err),
        chi2_reduced=shaped(chi2_reduced),
        redshift=np.array(z, dtype=np.float64),
        meta=dict(meta or {}),
        stellar_velocity_kms=shaped(stellar_v) if continuum == "template" else None,
        stellar_dispersion_kms=shaped(stellar_sigma) if continuum == "template" else None,
    )


def _strongest_line_snr(chunk: _Chunk, params: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """(n,) the largest flux / error over the fitted line components that the spectrum covers (0 if none)."""
    amp = params[:, chunk.n_nonlin : chunk.n_nonlin + _N_COMP]
    err = np.sqrt(np.maximum(np.einsum("nkk->nk", cov)[:, chunk.n_nonlin : chunk.n_nonlin + _N_COMP], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(chunk.comp_ok & (err > 0), amp / err, 0.0)
    return np.nan_to_num(snr, nan=0.0).max(axis=1)


def _free_dispersion_start(tied: _Chunk, free: _Chunk, params: np.ndarray):
    """The start and sigma^2 bounds of a free-dispersion fit (chunk `free`) from a tied fit's `params` (of chunk
    `tied`, same spectra): the same velocities and amplitudes, each dispersion group starting at its line's tied
    sigma^2 and bounded within DISPERSION_TIE_FACTOR of it. Returns (start (n, free.n_nonlin + K), (q_min, q_max))."""
    tied_q = np.stack([params[:, tied.q_column[free.q_column.index(_N_VEL + g)]]
                       for g in range(free.n_nonlin - _N_VEL)], axis=1)  # fmt: skip
    start = np.concatenate([params[:, :_N_VEL], tied_q, params[:, tied.n_nonlin :]], axis=1)
    factor2 = DISPERSION_TIE_FACTOR**2
    return start, (tied_q / factor2, np.minimum(tied_q * factor2, SIGMA_LIMIT_KMS**2))


# spectra per stellar-continuum call (memory ~ 256 x L pixels x 8 bytes x ~20: the template columns are built a few
# spectra at a time inside, galspec_hf.analysis.continuum._BATCH)
_CONTINUUM_CHUNK = 256
CONTINUUM_REFIT_MODES = ("same", "sasuke", "off")
#: ``continuum_refit="sasuke"``: the refit of the continuum under the fitted lines as Sasuke's joint fit when the
#: MaNGA DAP's own test_sasuke_mpl11 runs it: the whole template library at the first fit's stellar kinematics, and
#: no additive polynomial (Sasuke.fit's defaults degree=-1, mdegree=0; sdss-mangadap 4.5.0, mangadap/proc/sasuke.py).
SASUKE_REFIT = {"degree": -1, "all_templates": True}
#: The continuum fit's masked lines that the line fit does not model (H-delta, H-gamma, [NeIII], HeI, [OI], ...):
#: they stay masked when the continuum is refitted on the spectrum minus the fitted lines.
_UNMODELLED_MASKED_LINES_A = tuple(
    line for line in C.CONTINUUM_MASKED_LINES_VACUUM_A if np.min(np.abs(_LINE_REST_A - line)) > 1.0
)


def _subtract_stellar_continuum(wavelength, flux, ivar, redshift, sigma_inst_pix, degree, emission=None, starts=None,
                                refit=None, templates=None):
    """The spectra minus their stellar continuum, for the line fit: (flux (n, L), ivar (n, L) with the continuum's
    variance added, {line: the continuum at its expected centre (n,)}, [(ContinuumFit, rows), ...]).

    Without `emission`: the full fit (:func:`fit_stellar_continuum`) with every line window masked. With `emission`
    (n, L), the fitted lines, `starts`, the fits returned by the first call, and `refit`, keyword arguments of the
    refit (``degree``, ``all_templates``; default: `degree`, the start's templates): the continuum refitted to
    ``flux - emission`` with the same kinematics (and templates, unless ``all_templates``), the windows of the
    modelled lines unmasked, so that
    the stellar absorption under the lines is constrained by the pixels around them (one step of the joint fit of
    continuum and lines that the MaNGA DAP's Sasuke makes; Belfiore et al. 2019, AJ 158, 160, Sec. 3)."""
    stellar, stellar_var, fits = np.zeros_like(flux), np.zeros_like(flux), []
    for i, sub in enumerate(range(0, flux.shape[0], _CONTINUUM_CHUNK)):
        ss = slice(sub, sub + _CONTINUUM_CHUNK)
        if emission is None:
            fit = fit_stellar_continuum(wavelength, flux[ss], ivar[ss], redshift[ss], sigma_inst_pix, degree=degree,
                                        templates=templates)
        else:
            fit = fit_stellar_continuum(wavelength, flux[ss] - emission[ss], ivar[ss], redshift[ss], sigma_inst_pix,
                                        masked_lines=_UNMODELLED_MASKED_LINES_A, start=starts[i][0],
                                        templates=templates, **(refit or {"degree": degree}))  # fmt: skip
        stellar[ss], stellar_var[ss] = fit.continuum, fit.continuum_var
        fits.append((fit, ss))
    with np.errstate(divide="ignore"):
        ivar = np.where(ivar > 0, 1.0 / (1.0 / np.where(ivar > 0, ivar, 1.0) + stellar_var), 0.0)
    flux = np.where(ivar > 0, flux - stellar, 0.0)
    # the subtracted stellar continuum at each line's expected centre, spectrum by spectrum
    at_lines = np.stack([np.interp(_LINE_REST_A * (1.0 + z), wavelength, row) for z, row in zip(redshift, stellar,
                                                                                                 strict=True)])
    return flux, ivar, dict(zip(LINE_NAMES, at_lines.T, strict=True)), fits


_PER_LINE_KEYS = (
    "flux",
    "flux_err",
    "velocity_kms",
    "velocity_err_kms",
    "dispersion_kms",
    "dispersion_err_kms",
    "ew_rest_a",
    "ew_rest_err_a",
    "continuum",
    "instrumental_sigma_kms",
)


def _collect(chunk: _Chunk, params, cov, out, masks, sl, no_value, cont_at_line=None) -> None:
    """Turn fitted parameters and covariance into per-line quantities, written into ``out[key][line][sl]``.

    ``cont_at_line`` ({line: (n,)}, optional): the subtracted stellar continuum at each line's centre, added to
    the local baseline for the equivalent width and the reported continuum.
    """
    var = np.einsum("nkk->nk", cov)
    err = np.sqrt(np.maximum(var, 0.0))
    one_plus_z = 1.0 + chunk.redshift
    group_ok = [np.any([chunk.line_ok[line] for line in group], axis=0) for group in KINEMATIC_GROUPS.values()]
    n_nonlin = chunk.n_nonlin
    for k, (_, cplx, members) in enumerate(_COMPONENTS):
        i_amp = n_nonlin + k
        c = _COMPLEXES.index(cplx)
        i_c0, i_c1 = n_nonlin + _I_CONT + 2 * c, n_nonlin + _I_CONT + 2 * c + 1
        group, i_q = chunk.v_column[k], chunk.q_column[k]
        v, q = params[:, group], params[:, i_q]
        v_err, q_err = err[:, group], err[:, i_q]
        sigma = np.sqrt(np.maximum(q, 0.0))
        sigma_err = q_err / (2.0 * np.maximum(sigma, np.sqrt(np.maximum(q_err, 1e-300)) / 2.0))
        amp = params[:, i_amp]
        for line, ratio in members:
            ok = chunk.line_ok[line] & chunk.comp_ok[:, k] & group_ok[group]
            centre = chunk.centre0[line] * (1.0 + v / _C_KMS)
            d = (centre - chunk.cont_ref[cplx]) / _CONT_SLOPE_SCALE_A
            cont = params[:, i_c0] + params[:, i_c1] * d
            if cont_at_line is not None:
                cont = cont + cont_at_line[line]
            line_flux = ratio * amp
            # EW = F / C / (1 + z); gradient w.r.t. (amp, c0, c1) for the error
            with np.errstate(divide="ignore", invalid="ignore"):
                ew = line_flux / cont / one_plus_z
                g = (
                    np.stack([ratio / cont, -line_flux / cont**2, -line_flux * d / cont**2], axis=1)
                    / one_plus_z[:, None]
                )
            sub = cov[:, [i_amp, i_c0, i_c1]][:, :, [i_amp, i_c0, i_c1]]
            ew_err = np.sqrt(np.maximum(np.einsum("nk,nkl,nl->n", g, sub, g), 0.0))
            cont_ok = cont > 0
            values = {
                "flux": line_flux,
                "flux_err": ratio * err[:, i_amp],
                "velocity_kms": v,
                "velocity_err_kms": v_err,
                "dispersion_kms": sigma,
                "dispersion_err_kms": sigma_err,
                "ew_rest_a": np.where(cont_ok, ew, np.nan),
                "ew_rest_err_a": np.where(cont_ok, ew_err, np.nan),
                "continuum": cont,
                "instrumental_sigma_kms": chunk.sigma_inst[line],
            }
            for key, value in values.items():
                out[key][line][sl] = np.where(ok, value, np.nan)
            near_bound = (np.abs(v) >= 0.99 * VELOCITY_LIMIT_KMS) | (sigma >= 0.99 * SIGMA_LIMIT_KMS)
            masks[line][sl] = np.where(ok, np.where(near_bound, 1 << C.DAP_MASK_NEARBOUND_BIT, 0), no_value)


# ----------------------------------------------------------------------------------------
# Dn4000
# ----------------------------------------------------------------------------------------
def dn4000(wavelength, flux, ivar, redshift, *, mask=None, min_coverage: float = 0.5):
    """Dn4000: mean f_nu in rest 4000-4100 A over mean f_nu in rest 3850-3950 A (Balogh et al. 1999, ApJ 527, 54).

    f_nu is proportional to f_lambda lambda^2; each band mean is the pixel-width-weighted mean of
    f_lambda lambda^2 over unmasked pixels whose centres lie in the band (bands from
    :data:`galspec_hf.constants.DN4000_BLUE_A`, ``DN4000_RED_A``, shifted by 1 + z).

    Parameters
    ----------
    wavelength : array (L,), observed vacuum Angstrom.
    flux, ivar : arrays (..., L), 1e-17 erg/s/cm2/A and inverse variance.
    redshift : float or array broadcastable to (...).
    mask : optional, nonzero = bad pixel.
    min_coverage : fraction of each band (in pixel width) that must be unmasked, else NaN.

    Returns
    -------
    (dn4000, dn4000_err) : arrays (...); the error by linear propagation of the ivar.
    """
    wavelength = np.asarray(wavelength, np.float64)
    flux = np.asarray(flux, np.float64)
    ivar = np.asarray(ivar, np.float64)
    if flux.shape[-1] != wavelength.size or ivar.shape != flux.shape:
        raise ValueError(f"flux and ivar must have shape (..., {wavelength.size}), got {flux.shape}, {ivar.shape}")
    lead = flux.shape[:-1]
    z = np.broadcast_to(np.asarray(redshift, np.float64), lead)[..., None]
    good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    if mask is not None:
        good &= np.asarray(mask) == 0
    dlam = np.diff(pixel_edges(wavelength))
    fnu = np.where(good, flux, 0.0) * wavelength**2
    with np.errstate(divide="ignore", invalid="ignore"):
        var_fnu = np.where(good, 1.0 / np.where(good, ivar, 1.0), 0.0) * wavelength**4
    rest = wavelength / (1.0 + z)
    means, variances = [], []
    ok = np.ones(lead, bool)
    for lo, hi in (C.DN4000_BLUE_A, C.DN4000_RED_A):
        in_band = (rest >= lo) & (rest < hi)
        width_all = (in_band * dlam).sum(axis=-1)
        weights = in_band * good * dlam
        width = weights.sum(axis=-1)
        ok &= (width_all > 0) & (width >= min_coverage * (hi - lo) * (1.0 + z[..., 0]))
        with np.errstate(divide="ignore", invalid="ignore"):
            means.append((weights * fnu).sum(axis=-1) / width)
            variances.append((weights**2 * var_fnu).sum(axis=-1) / width**2)
    blue, red = means
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = red / blue
        err = np.abs(ratio) * np.sqrt(variances[1] / red**2 + variances[0] / blue**2)
    ok &= np.isfinite(ratio) & (blue > 0)
    return np.where(ok, ratio, np.nan), np.where(ok, err, np.nan)
