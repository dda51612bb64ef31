"""MaNGA-format IFU truth: a DRP-like LOGCUBE and a DAP-like MAPS file for a simulated galaxy.

The cube is what MaNGA would deliver: 0.5 arcsec spaxels, a 2.5 arcsec FWHM Gaussian PSF
(Law et al. 2016), MaNGA's log-lambda grid, MaNGA-like spectral resolution and noise, flux
per spaxel per Angstrom in 1e-17 erg/s/cm2. The MAPS file holds the true (noise-free,
PSF-convolved) emission-line fluxes and velocities per spaxel, with DAP header conventions
copied from ../shared/data/manga/manga-7815-3702-MAPS-*.fits.gz.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve

from .. import constants as C
from ..io.manga import spaxel_wcs_header, write_manga_cube, write_manga_maps
from ..sky import fiber_sky_position
from ..spectral import manga_resolution, manga_sigma_kms, pixel_edges, rebin_flux_conserving
from .galaxy import LINE_NAMES, LINE_WAVELENGTHS_REST_A, Galaxy, component_spectra_rest, render_maps
from .imaging import gaussian_kernel, pixel_grid
from .spectra import gaussian_lines_on_grid
from .templates import TemplateSet

#: MaNGA-like per-pixel noise per spaxel: sigma^2 = SIGMA0^2 + GAIN_TERM * flux (1e-17 erg/s/cm2/A/spaxel); the
#: faint-spaxel floor 0.011 and 0.025 at flux 3 match the IVAR of ../shared/data/manga/MaNGA_test_spectra.fits.gz.
MANGA_NOISE_SIGMA0 = 0.011
MANGA_NOISE_FLUX_TERM = 1.68e-4
#: DAP emission-line channels of the real MAPS file (C01..C22), and the ones this simulation fills.
DAP_EMLINE_CHANNELS = (
    "OII-3727", "OII-3729", "Hthe-3798", "Heta-3836", "NeIII-3869", "Hzet-3890", "NeIII-3968", "Heps-3971",
    "Hdel-4102", "Hgam-4341", "HeII-4687", "Hb-4862", "OIII-4960", "OIII-5008", "HeI-5877", "OI-6302", "OI-6365",
    "NII-6549", "Ha-6564", "NII-6585", "SII-6718", "SII-6732",
)  # fmt: skip
DAP_CHANNEL_OF_LINE = C.DAP_CHANNEL_NAMES
#: MANGA_DAPPIXMASK bits (sdss/mangadap, data/bitmasks): 4 NOVALUE, 30 DONOTUSE.
DAP_NOVALUE = 1 << 4
DAP_DONOTUSE = 1 << 30
VELOCITY_BIN_KMS = 15.0


def manga_wavelength() -> np.ndarray:
    """MaNGA LOGCUBE wavelengths (vacuum A): 10**(MANGA_LOGLAM0 + MANGA_LOGLAM_STEP * i), i < MANGA_NUM_PIXELS."""
    return 10 ** (C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(C.MANGA_NUM_PIXELS))


def simulate_cube(
    galaxy: Galaxy,
    templates: TemplateSet,
    n_spaxels: int = 32,
    rng: np.random.Generator | None = None,
    psf_fwhm_arcsec: float = C.MANGA_PSF_FWHM_ARCSEC,
) -> dict:
    """A MaNGA-like cube of ``galaxy``, centred on the galaxy.

    Parameters
    ----------
    n_spaxels : cube side in spaxels (0.5 arcsec each).
    rng : noise generator; None gives a noiseless cube (ivar still that of MaNGA-like noise).
    psf_fwhm_arcsec : FWHM of the Gaussian reconstructed PSF.

    Returns
    -------
    dict with 'flux', 'ivar' : (n_wave, n, n) float32, 1e-17 erg/s/cm2/A/spaxel; 'wavelength' : (n_wave,);
    'line_flux' : (L, n, n) true line flux per spaxel (1e-17 erg/s/cm2/spaxel, PSF-convolved, LINE_NAMES order);
    'line_velocity', 'line_sigma' : (L, n, n) km/s; 'stellar_velocity' : (n, n) km/s;
    'east', 'north' : (n, n) arcsec offsets of spaxel centres from the galaxy centre;
    'line_flux_total' : (L,) line flux of the galaxy over the infinite plane (model truth).
    """
    if n_spaxels < 4:
        raise ValueError(f"n_spaxels must be >= 4, got {n_spaxels}")
    spaxel = C.MANGA_SPAXEL_ARCSEC
    oversample = 2
    fine = spaxel / oversample
    margin = int(math.ceil(2 * psf_fwhm_arcsec / fine))
    size_fine = n_spaxels * oversample + 2 * margin
    east, north = pixel_grid(size_fine, fine)
    east = east + galaxy.centre_east_arcsec
    north = north + galaxy.centre_north_arcsec
    maps = render_maps(galaxy, east, north, fine)
    kernel = gaussian_kernel(psf_fwhm_arcsec, fine)

    def smooth(image: np.ndarray) -> np.ndarray:
        out = fftconvolve(image, kernel, mode="same")[margin:-margin, margin:-margin]
        return out.reshape(n_spaxels, oversample, n_spaxels, oversample).sum(axis=(1, 3))

    bulge = smooth(maps["bulge"])
    disk = smooth(maps["disk"])
    disk_v = smooth(maps["disk"] * maps["velocity_stars"])
    stellar_velocity = np.divide(disk_v, bulge + disk, out=np.zeros_like(disk), where=(bulge + disk) > 0)
    disk_velocity = np.divide(disk_v, disk, out=np.zeros_like(disk), where=disk > 0)

    wavelength = manga_wavelength()
    edges = 10 ** pixel_edges(np.log10(wavelength))  # geometric edges of the log-lambda pixels
    z = galaxy.redshift
    scale = galaxy.continuum_scale / (1 + z)
    sigma_inst = float(np.median(manga_sigma_kms(wavelength)))
    broadened = galaxy.__class__(**galaxy.to_dict())
    broadened.sigma_bulge_kms = math.hypot(galaxy.sigma_bulge_kms, sigma_inst)
    broadened.sigma_disk_kms = math.hypot(galaxy.sigma_disk_kms, sigma_inst)
    spectra = component_spectra_rest(templates, broadened)
    wave_obs = templates.wavelength_rest * (1 + z)
    bulge_spec = scale * rebin_flux_conserving(wave_obs, spectra["bulge"], edges)
    disk_spec_rest = scale * rebin_flux_conserving(wave_obs, spectra["disk"], edges)
    # disk continuum Doppler-shifted per spaxel by its light-weighted stellar velocity: a shift in log-lambda pixels
    loglam = np.log10(wavelength)
    cube = bulge[None] * bulge_spec[:, None, None]
    shift_pix = np.log10(1 + disk_velocity / C.SPEED_OF_LIGHT_KMS) / C.MANGA_LOGLAM_STEP
    index = np.arange(loglam.size)[:, None, None] - shift_pix[None]
    cube = cube + disk[None] * np.interp(index, np.arange(loglam.size), disk_spec_rest)

    # emission lines: per spaxel velocity histograms of each line after the PSF
    line_maps = maps["lines_sf"]
    v = maps["velocity_gas"]
    v_min = float(v.min())
    bins = np.floor((v - v_min) / VELOCITY_BIN_KMS).astype(int)
    n_bins = int(bins.max()) + 1
    n_lines = len(LINE_NAMES)
    hist = np.zeros((n_lines, n_bins, n_spaxels, n_spaxels))
    for b in range(n_bins):
        sel = bins == b
        if not sel.any():
            continue
        for i in range(n_lines):
            hist[i, b] = smooth(np.where(sel, line_maps[i], 0.0))
    v_centres = v_min + (np.arange(n_bins) + 0.5) * VELOCITY_BIN_KMS
    agn = np.stack([smooth(maps["lines_agn"][i]) for i in range(n_lines)]) if galaxy.agn else None

    line_flux = hist.sum(axis=1) + (agn if agn is not None else 0.0)
    sf_total = hist.sum(axis=1)
    sf_velocity = np.divide(
        (hist * v_centres[None, :, None, None]).sum(axis=1), sf_total, out=np.zeros_like(sf_total), where=sf_total > 0
    )
    sf_var = np.divide(
        (hist * (v_centres[None, :, None, None] - sf_velocity[:, None]) ** 2).sum(axis=1),
        sf_total,
        out=np.zeros_like(sf_total),
        where=sf_total > 0,
    )
    line_velocity = np.divide(sf_velocity * sf_total, line_flux, out=np.zeros_like(line_flux), where=line_flux > 0)
    line_sigma = np.sqrt(sf_var + galaxy.sigma_gas_kms**2)

    sigma_gas_total = math.hypot(galaxy.sigma_gas_kms, VELOCITY_BIN_KMS / math.sqrt(12))
    doppler = np.sqrt((1 + v_centres / C.SPEED_OF_LIGHT_KMS) / (1 - v_centres / C.SPEED_OF_LIGHT_KMS))
    for j in range(n_spaxels):
        for k in range(n_spaxels):
            h = hist[:, :, j, k]
            centres = (LINE_WAVELENGTHS_REST_A[:, None] * (1 + z) * doppler[None, :]).ravel()
            sig_kms = np.hypot(sigma_gas_total, manga_sigma_kms(centres))
            fluxes = h.ravel()
            if agn is not None:
                agn_c = LINE_WAVELENGTHS_REST_A * (1 + z)
                centres = np.concatenate([centres, agn_c])
                sig_kms = np.concatenate([sig_kms, np.hypot(galaxy.agn_sigma_kms, manga_sigma_kms(agn_c))])
                fluxes = np.concatenate([fluxes, agn[:, j, k]])
            cube[:, j, k] += gaussian_lines_on_grid(edges, centres, centres * sig_kms / C.SPEED_OF_LIGHT_KMS, fluxes)

    sigma = np.sqrt(MANGA_NOISE_SIGMA0**2 + MANGA_NOISE_FLUX_TERM * np.maximum(cube, 0.0))
    flux = cube if rng is None else cube + sigma * rng.standard_normal(cube.shape)
    spaxel_east, spaxel_north = pixel_grid(n_spaxels, spaxel)
    from .galaxy import total_line_fluxes  # noqa: PLC0415

    return {
        "flux": flux.astype(np.float32),
        "ivar": (1.0 / sigma**2).astype(np.float32),
        "model": cube,
        "wavelength": wavelength,
        "line_flux": line_flux,
        "line_velocity": line_velocity,
        "line_sigma": line_sigma,
        "stellar_velocity": stellar_velocity,
        "east": spaxel_east,
        "north": spaxel_north,
        "line_flux_total": total_line_fluxes(galaxy),
        "sigma": sigma,
    }


def _galaxy_radec(galaxy: Galaxy) -> tuple[float, float]:
    ra, dec = fiber_sky_position(
        galaxy.target_ra_deg, galaxy.target_dec_deg, galaxy.centre_east_arcsec, galaxy.centre_north_arcsec
    )
    return float(ra), float(dec)


def _primary_header(galaxy: Galaxy, plateifu: str):
    from astropy.io import fits  # noqa: PLC0415

    ra, dec = _galaxy_radec(galaxy)
    header = fits.Header()
    header["PLATEIFU"] = plateifu
    header["MANGAID"] = f"9-{galaxy.targetid}"
    header["OBJRA"] = ra
    header["OBJDEC"] = dec
    header["IFURA"] = ra
    header["IFUDEC"] = dec
    header["EBVGAL"] = 0.0
    header["RFWHM"] = (C.MANGA_PSF_FWHM_ARCSEC, "Reconstructed r-band PSF FWHM (arcsec)")
    header["SCINPVEL"] = (C.SPEED_OF_LIGHT_KMS * galaxy.redshift, "Input velocity cz (km/s)")
    header["Z"] = (galaxy.redshift, "galspec-hf true redshift")
    header["TARGETID"] = (galaxy.targetid, "DESI-like TARGETID of the same galaxy")
    header["SYNTHETC"] = (True, "galspec-hf simulated galaxy")
    return header


def write_logcube(path: str | Path, galaxy: Galaxy, cube: dict, plateifu: str) -> Path:
    """Write a MaNGA DRP-like LOGCUBE (PRIMARY, FLUX, IVAR, MASK, WAVE, SPECRES, SPECRESD); gzip if path ends .gz."""
    ra, dec = _galaxy_radec(galaxy)
    specres = manga_resolution(cube["wavelength"])
    return write_manga_cube(
        path,
        cube["wavelength"],
        cube["flux"],
        cube["ivar"],
        ra_deg=ra,
        dec_deg=dec,
        spaxel_arcsec=C.MANGA_SPAXEL_ARCSEC,
        primary_header=_primary_header(galaxy, plateifu),
        extra_hdus={"SPECRES": specres.astype(np.float64), "SPECRESD": np.full(specres.size, 50.0)},
    )


def write_maps(path: str | Path, galaxy: Galaxy, cube: dict, plateifu: str) -> Path:
    """Write a DAP-MAPS-like file with the true line fluxes and velocities.

    HDUs: PRIMARY, SPX_SKYCOO, STELLAR_VEL (+_IVAR, _MASK), EMLINE_GFLUX (+_IVAR, _MASK), EMLINE_GVEL (+_IVAR, _MASK),
    EMLINE_GSIGMA, all with the 22 DAP channels (C01..C22) of the real file; channels this simulation does not model
    hold 0 with mask NOVALUE|DONOTUSE. EMLINE_GFLUX_IVAR is the inverse variance a Gaussian fit to the cube's noise
    would have (sigma_F ~ sigma_pix sqrt(2 sqrt(pi) sigma_line delta_lambda)).
    """
    from astropy.io import fits  # noqa: PLC0415

    n = cube["line_flux"].shape[1]
    ra, dec = _galaxy_radec(galaxy)
    n_ch = len(DAP_EMLINE_CHANNELS)
    gflux = np.zeros((n_ch, n, n), np.float32)
    gflux_ivar = np.zeros((n_ch, n, n), np.float32)
    gmask = np.full((n_ch, n, n), DAP_NOVALUE | DAP_DONOTUSE, np.int32)
    gvel = np.zeros((n_ch, n, n), np.float32)
    gsig = np.zeros((n_ch, n, n), np.float32)
    wavelength = cube["wavelength"]
    for i, name in enumerate(LINE_NAMES):
        ch = DAP_EMLINE_CHANNELS.index(DAP_CHANNEL_OF_LINE[name])
        gflux[ch] = cube["line_flux"][i]
        gvel[ch] = cube["line_velocity"][i]
        gsig[ch] = cube["line_sigma"][i]
        centre = LINE_WAVELENGTHS_REST_A[i] * (1 + galaxy.redshift)
        pix = int(np.clip(np.searchsorted(wavelength, centre), 0, wavelength.size - 1))
        sigma_pix = cube["sigma"][pix]
        sigma_line_a = centre * np.hypot(cube["line_sigma"][i], manga_sigma_kms(centre)) / C.SPEED_OF_LIGHT_KMS
        dlam = wavelength[pix] * math.log(10) * C.MANGA_LOGLAM_STEP
        flux_sigma = sigma_pix * np.sqrt(2 * math.sqrt(math.pi) * sigma_line_a * dlam)
        gflux_ivar[ch] = 1.0 / flux_sigma**2
        gmask[ch] = 0
    chans = DAP_EMLINE_CHANNELS
    maps = {
        "SPX_SKYCOO": (np.stack([cube["east"], cube["north"]]).astype(np.float32), "arcsec", ("On-sky X", "On-sky Y")),
        "STELLAR_VEL": (cube["stellar_velocity"].astype(np.float32), "km/s", None),
        "STELLAR_VEL_IVAR": (np.full((n, n), 1e-2, np.float32), "(km/s)^{-2}", None),
        "STELLAR_VEL_MASK": (np.zeros((n, n), np.int32), None, None),
        "EMLINE_GFLUX": (gflux, "1E-17 erg/s/cm^2/spaxel", chans),
        "EMLINE_GFLUX_IVAR": (gflux_ivar, "(1E-17 erg/s/cm^2/spaxel)^{-2}", chans),
        "EMLINE_GFLUX_MASK": (gmask, None, chans),
        "EMLINE_GVEL": (gvel, "km/s", chans),
        "EMLINE_GVEL_IVAR": (np.where(gmask == 0, 1e-2, 0.0).astype(np.float32), "(km/s)^{-2}", chans),
        "EMLINE_GVEL_MASK": (gmask, None, chans),
        "EMLINE_GSIGMA": (gsig, "km/s", chans),
    }
    wcs_header = spaxel_wcs_header(fits.Header(), ra, dec, n, n, C.MANGA_SPAXEL_ARCSEC, matrix="pc")
    return write_manga_maps(path, maps, wcs_header=wcs_header, primary_header=_primary_header(galaxy, plateifu))
