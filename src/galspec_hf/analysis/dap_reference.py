"""The MaNGA DAP's own line fit of a spectra file: the reference our line fit is compared with.

The DAP (sdss-mangadap, from the test extra; Westfall et al. 2019, AJ 158, 231; Belfiore et al. 2019, AJ 158,
160) is run exactly as its own test ``mangadap/tests/test_sasuke.py::test_sasuke_mpl11`` runs it: a pPXF
stellar-continuum fit with the MILES-HC library (additive Legendre degree 8, two moments), then Sasuke with the
ELPMPL11 line list. Used by tests/analysis/test_dap_agreement.py (agreement), examples/compare_with_dap.py (the
table of docs/LINES.md) and benchmarks/bench_lines.py (speed). :func:`fit_spectra_file` fits the same file with
this package's fitter, :func:`compared_spectra` picks the spectra where the DAP's fit can be trusted and
:func:`compare_with_dap` puts the two side by side. ``mangadap`` is imported inside :func:`run_dap` only: it is
an optional dependency (``pip install -e ".[test]"``).
"""

from __future__ import annotations

import numpy as np

from .. import constants as C

__all__ = ["DAP_LINES", "compare_with_dap", "compared_spectra", "fit_spectra_file", "run_dap"]

#: DAP ELPMPL11 names of the compared lines -> this package's names.
DAP_LINES = {"Ha-6564": "Halpha", "Hb-4862": "Hbeta", "NII-6585": "NII_6585", "OIII-5008": "OIII_5008"}
#: A DAP line's flux S/N must exceed this for the line to be compared.
DAP_MIN_SNR = 3.0
#: A DAP dispersion at or above this is at (or next to) the DAP's 1000 km/s upper bound: the fit looks wrong.
DAP_DISPERSION_AT_BOUND_KMS = 990.0
#: ELPMPL11 ties [NII] 6585's velocity to H-alpha's and bounds its dispersion within 1.4x of H-alpha's. Where the
#: DAP's [NII] dispersion is still more than this many times its H-alpha dispersion, the broad [NII] Gaussian takes
#: H-alpha's wings (spectrum 3 of ../shared/data/manga/MaNGA_test_spectra.fits.gz: [NII] 641 km/s against
#: H-alpha 119 km/s and [OIII] 134 km/s): H-alpha and [NII] of that spectrum are left out, [OIII] and H-beta kept.
DAP_NII_TO_HALPHA_DISPERSION_MAX = 3.0


def run_dap(path) -> dict:
    """Run pPXF (MILES-HC) + Sasuke (ELPMPL11) on a MaNGA spectra file as in mangadap's test_sasuke_mpl11.

    `path` is a FITS file with the HDUs WAVE, FLUX, IVAR, MASK, SRES and Z (as
    ../shared/data/manga/MaNGA_test_spectra.fits.gz). Raises ImportError naming ``sdss-mangadap`` when it is
    not installed.

    Returns ``{"flux": {line: (8,)}, "flux_err": ..., "velocity_kms": ..., "dispersion_kms": ..., "mask": ...,
    "fit_mask": (8,) int, "stellar_velocity_kms": (8,), "stellar_dispersion_kms": (8,), "stellar_continuum": (8,
    L), "joint_stellar_continuum": (8, L), "emission_model": (8, L)}`` with the package's line names; velocities
    relative to the file's redshift (the DAP reports cz); the stellar continua (pPXF's, with the lines masked, and
    Sasuke's, fitted together with the lines) and Sasuke's emission-line model in the file's flux unit, NaN where
    the DAP masked the pixel.
    """
    try:
        import mangadap  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "run_dap needs the MaNGA DAP, the package `sdss-mangadap` (module `mangadap`): install the test extra "
            'with `pip install -e ".[test]"`'
        ) from error
    from astropy.io import fits
    from mangadap.datacube import MaNGADataCube
    from mangadap.par.artifactdb import ArtifactDB
    from mangadap.par.emissionlinedb import EmissionLineDB
    from mangadap.proc.emissionlinemodel import EmissionLineModelBitMask
    from mangadap.proc.ppxffit import PPXFFit
    from mangadap.proc.sasuke import Sasuke
    from mangadap.proc.stellarcontinuummodel import StellarContinuumModelBitMask
    from mangadap.proc.templatelibrary import TemplateLibrary
    from mangadap.util.drpbitmask import DRPFitsBitMask
    from mangadap.util.pixelmask import SpectralPixelMask

    with fits.open(path) as hdu:
        wave, sres, z = hdu["WAVE"].data.copy(), hdu["SRES"].data.copy(), hdu["Z"].data.copy()
        drpbm = DRPFitsBitMask()
        flux = np.ma.MaskedArray(
            hdu["FLUX"].data, mask=drpbm.flagged(hdu["MASK"].data, MaNGADataCube.do_not_fit_flags())
        )
        ferr = np.ma.power(hdu["IVAR"].data, -0.5)
    flux[ferr.mask] = np.ma.masked
    ferr[flux.mask] = np.ma.masked
    nspec = flux.shape[0]
    velscale_ratio = 4
    tpl = TemplateLibrary("MILESHC", match_resolution=False, velscale_ratio=velscale_ratio, spectral_step=1e-4,
                          log=True, hardcopy=False)  # fmt: skip
    tpl_sres = np.mean(tpl["SPECRES"].data, axis=0)
    pixelmask = SpectralPixelMask(artdb=ArtifactDB.from_key("BADSKY"), emldb=EmissionLineDB.from_key("ELPSCMSK"))
    ppxf = PPXFFit(StellarContinuumModelBitMask())
    _, sc_model, _, sc_par = ppxf.fit(
        tpl["WAVE"].data.copy(), tpl["FLUX"].data.copy(), wave, flux, ferr, z, np.full(nspec, 100.0),
        iteration_mode="no_global_wrej", reject_boxcar=100, ensemble=False, velscale_ratio=velscale_ratio,
        mask=pixelmask, matched_resolution=False, tpl_sres=tpl_sres, obj_sres=sres, degree=8, moments=2,
    )  # fmt: skip
    emldb = EmissionLineDB.from_key("ELPMPL11")
    emlfit = Sasuke(EmissionLineModelBitMask())
    _, model_flux, model_eml_flux, _, el_fit, el_par = emlfit.fit(
        emldb, wave, flux, obj_ferr=ferr, obj_mask=SpectralPixelMask(artdb=ArtifactDB.from_key("BADSKY")),
        obj_sres=sres, guess_redshift=z, guess_dispersion=np.full(nspec, 100.0), reject_boxcar=101,
        stpl_wave=tpl["WAVE"].data, stpl_flux=tpl["FLUX"].data, stpl_sres=tpl_sres,
        stellar_kinematics=sc_par["KIN"], etpl_sinst_mode="offset", etpl_sinst_min=10.0,
        velscale_ratio=velscale_ratio,
    )  # fmt: skip
    names = list(emldb["name"])
    restwave = np.asarray(emldb["restwave"])
    cz = C.SPEED_OF_LIGHT_KMS * z
    out = {key: {} for key in ("flux", "flux_err", "velocity_kms", "dispersion_kms", "mask")}
    for dap_name, name in DAP_LINES.items():
        base, wl = dap_name.split("-")
        pairs = enumerate(zip(names, restwave, strict=True))
        j = [i for i, (n, w) in pairs if n == base and abs(w - float(wl)) < 2][0]
        out["flux"][name] = np.asarray(el_par["FLUX"][:, j], float)
        out["flux_err"][name] = np.asarray(el_par["FLUXERR"][:, j], float)
        # DAP KIN[:, j, 0] is cz (km/s) of the line; relative to the file's cz, in the relativistic sense
        out["velocity_kms"][name] = (np.asarray(el_par["KIN"][:, j, 0], float) - cz) / (1 + z)
        out["dispersion_kms"][name] = np.asarray(el_par["KIN"][:, j, 1], float)
        out["mask"][name] = np.asarray(el_par["MASK"][:, j], np.int64)
    out["fit_mask"] = np.asarray(el_fit["MASK"], np.int64)
    out["stellar_velocity_kms"] = (np.asarray(sc_par["KIN"][:, 0], float) - cz) / (1 + z)
    out["stellar_dispersion_kms"] = np.asarray(sc_par["KIN"][:, 1], float)
    # the DAP's best-fit stellar continuum (templates + additive polynomial) on the file's pixels; NaN where masked
    out["stellar_continuum"] = np.ma.filled(np.ma.asarray(sc_model, dtype=float), np.nan)
    # Sasuke fits the stellar templates again together with the lines: its continuum under the lines (total model
    # minus the emission-line model), NaN where masked
    out["joint_stellar_continuum"] = np.ma.filled(
        np.ma.asarray(model_flux, dtype=float) - np.ma.asarray(model_eml_flux, dtype=float), np.nan
    )
    # and its emission-line model (every ELPMPL11 line), NaN where masked
    out["emission_model"] = np.ma.filled(np.ma.asarray(model_eml_flux, dtype=float), np.nan)
    return out


def compared_spectra(dap: dict) -> tuple[dict, np.ndarray]:
    """The spectra each line is compared on: the DAP's flux S/N > DAP_MIN_SNR, no mask bit, a dispersion below its
    bound, and for H-alpha and [NII] not a broad [NII] (see DAP_NII_TO_HALPHA_DISPERSION_MAX). Returns ({line:
    (n,) bool}, the (n,) bool broad-[NII] flags)."""
    broad_nii = dap["dispersion_kms"]["NII_6585"] > DAP_NII_TO_HALPHA_DISPERSION_MAX * dap["dispersion_kms"]["Halpha"]
    selected = {}
    for name in DAP_LINES.values():
        flux, err = dap["flux"][name], dap["flux_err"][name]
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = (err > 0) & (flux / err > DAP_MIN_SNR) & (dap["mask"][name] == 0)
        ok &= dap["dispersion_kms"][name] < DAP_DISPERSION_AT_BOUND_KMS
        if name in ("Halpha", "NII_6585"):
            ok &= ~broad_nii
        selected[name] = ok
    return selected, broad_nii


def fit_spectra_file(path, subtract=None, **kwargs):
    """Fit a MaNGA spectra file (as :func:`run_dap` reads) with :func:`galspec_hf.analysis.fit_emission_lines`, one
    resolution vector for all spectra (the median SRES of those that have one; a fully masked spectrum has SRES 0).
    `kwargs` go to the fitter (e.g. ``dispersions``). `subtract` (n, L), optional: a continuum model taken off the
    flux first (e.g. the DAP's ``stellar_continuum``; its NaN pixels are masked); fit the residual with
    ``continuum="local", balmer_absorption=False``. Returns (spectra, LineMaps)."""
    from ..data import read_manga_spectra
    from .lines import fit_emission_lines

    spectra = read_manga_spectra(path)
    usable = spectra.spectral_resolution.max(axis=1) > 0
    resolution = np.median(spectra.spectral_resolution[usable], axis=0)
    flux, ivar = spectra.flux, spectra.ivar
    if subtract is not None:
        subtract = np.asarray(subtract, dtype=float)
        if subtract.shape != flux.shape:
            raise ValueError(f"`subtract` must have the spectra's shape {flux.shape}, got {subtract.shape}")
        flux = np.where(np.isfinite(subtract), flux - subtract, 0.0)
        ivar = np.where(np.isfinite(subtract), ivar, 0.0)
    maps = fit_emission_lines(spectra.wavelength, flux, ivar, spectra.redshift, mask=spectra.mask,
                              spectral_resolution=resolution, **kwargs)  # fmt: skip
    return spectra, maps


def compare_with_dap(dap: dict, maps, selected: dict) -> dict:
    """Per compared line, the package's fit (`maps`, a LineMaps of the same spectra) against the DAP's on the
    `selected` spectra (:func:`compared_spectra`): ``{line: {"spectra", "ratio", "ratio_median", "z",
    "abs_z_median", "dispersion_kms", "dap_dispersion_kms"}}``, z = (package - DAP) / both errors in quadrature, the
    dispersions as each reports them (the package's intrinsic, the DAP's with the instrument in it)."""
    out = {}
    for name in DAP_LINES.values():
        sel = selected[name]
        ratio = maps.flux[name][sel] / dap["flux"][name][sel]
        z = (maps.flux[name][sel] - dap["flux"][name][sel]) / np.hypot(maps.flux_err[name][sel],
                                                                          dap["flux_err"][name][sel])  # fmt: skip
        out[name] = {"spectra": np.flatnonzero(sel).tolist(), "ratio": ratio.tolist(),
                     "ratio_median": float(np.median(ratio)) if ratio.size else None, "z": z.tolist(),
                     "abs_z_median": float(np.median(np.abs(z))) if z.size else None,
                     "dispersion_kms": maps.dispersion_kms[name][sel].tolist(),
                     "dap_dispersion_kms": dap["dispersion_kms"][name][sel].tolist()}  # fmt: skip
    return out
