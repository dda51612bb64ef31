"""Writers of small survey files in the real layouts, for tests and benchmarks.

They write what the readers in :mod:`galspec_hf.data.readers` expect from the real archives:
a DESI healpix coadd (PRIMARY, FIBERMAP, {B,R,Z}_WAVELENGTH/_FLUX/_IVAR/_MASK/_RESOLUTION),
its redrock file (REDSHIFTS), a Legacy Surveys cutout (primary (bands, H, W) image with a TAN
WCS and BAND0.. keywords), a MaNGA DRP LOGCUBE and an SDSS spec file. The spectra are a flat
continuum plus an H-alpha and an [OIII] 5008 line at the target's redshift, so a test can
check where lines land. Nothing here is real data: use ../shared/data for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from .. import constants as C
from .readers import DESI_ARMS

__all__ = [
    "FakeTarget",
    "make_targets",
    "write_desi_coadd",
    "write_redrock",
    "write_legacy_cutout",
    "write_manga_cube",
    "write_sdss_spec",
    "write_desi_folder",
]

#: Flux of the fake continuum (1e-17 erg/s/cm2/A) and of the fake lines (1e-17 erg/s/cm2).
CONTINUUM = 1.0
LINE_FLUX = 40.0
LINE_SIGMA_A = 2.0


@dataclass
class FakeTarget:
    """One fake DESI target; ``fiber_offset_arcsec`` is (east, north) of the fiber from the target."""

    targetid: int
    ra: float
    dec: float
    z: float = 0.1
    fiber_offset_arcsec: tuple[float, float] = (0.0, 0.0)
    spectype: str = "GALAXY"
    zwarn: int = 0
    deltachi2: float = 500.0
    coadd_fiberstatus: int = 0
    #: FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX; 0.779 is the value in the real DESI coadd
    #: ../shared/data/desi/coadd-4-80613-thru20210324.fits.
    psf_to_fiber: float = 0.779

    @property
    def fiber_ra(self) -> float:
        return self.ra + self.fiber_offset_arcsec[0] / 3600.0 / np.cos(np.deg2rad(self.dec))

    @property
    def fiber_dec(self) -> float:
        return self.dec + self.fiber_offset_arcsec[1] / 3600.0


def make_targets(n: int, *, seed: int = 0, first_targetid: int = 39633345008634465, ra=150.0, dec=2.0):
    """``n`` good galaxies spread over a few arcmin, redshifts 0.05-0.35, fiber offsets up to 1 arcsec,
    point-source fiber fractions (MEAN_PSF_TO_FIBER_SPECFLUX) 0.6-0.9 around DESI's typical 0.78."""
    rng = np.random.default_rng(seed)
    factor_rng = np.random.default_rng([seed, 1])  # own stream: the other draws stay as they were
    return [
        FakeTarget(
            psf_to_fiber=float(factor_rng.uniform(0.6, 0.9)),
            targetid=first_targetid + i,
            ra=float(ra + rng.uniform(-0.05, 0.05)),
            dec=float(dec + rng.uniform(-0.05, 0.05)),
            z=float(rng.uniform(0.05, 0.35)),
            fiber_offset_arcsec=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        )
        for i in range(n)
    ]


def _arm_wavelength(arm: str) -> np.ndarray:
    start, stop = C.DESI_ARMS_A[arm]
    n = int(round((stop - start) / C.DESI_WAVELENGTH_STEP_A)) + 1
    return start + C.DESI_WAVELENGTH_STEP_A * np.arange(n)


def fake_spectrum(wavelength: np.ndarray, z: float) -> np.ndarray:
    """Noise-free continuum + H-alpha + [OIII] 5008 at redshift ``z``; shape like ``wavelength``."""
    flux = np.full(wavelength.shape, CONTINUUM, np.float64)
    for line in ("Halpha", "OIII_5008"):
        centre = C.EMISSION_LINES_VACUUM_A[line] * (1 + z)
        flux += (
            LINE_FLUX
            / (np.sqrt(2 * np.pi) * LINE_SIGMA_A)
            * np.exp(-0.5 * ((wavelength - centre) / LINE_SIGMA_A) ** 2)
        )
    return flux


def write_desi_coadd(
    path: str | Path,
    targets: list[FakeTarget],
    *,
    survey: str = "main",
    program: str = "dark",
    healpix: int = 10032,
    seed: int = 0,
    ivar_value: float = 100.0,
    with_fibermap: bool = True,
    with_resolution: bool = True,
) -> Path:
    """Write a DESI healpix coadd file for ``targets`` (one spectrum each) in the real HDU layout."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    primary = fits.PrimaryHDU()
    primary.header.update(
        {"SPGRP": "healpix", "SPGRPVAL": healpix, "SURVEY": survey, "PROGRAM": program, "HPXPIXEL": healpix}
    )
    primary.header["HPXNSIDE"] = C.DESI_HEALPIX_NSIDE
    hdus = [primary]
    n = len(targets)
    if with_fibermap:
        columns = [
            fits.Column("TARGETID", "K", array=[t.targetid for t in targets]),
            fits.Column("COADD_FIBERSTATUS", "J", array=[t.coadd_fiberstatus for t in targets]),
            fits.Column("TARGET_RA", "D", array=[t.ra for t in targets]),
            fits.Column("TARGET_DEC", "D", array=[t.dec for t in targets]),
            fits.Column("OBJTYPE", "3A", array=["TGT"] * n),
            fits.Column("FLUX_G", "E", array=np.full(n, 10.0)),
            fits.Column("FLUX_R", "E", array=np.full(n, 20.0)),
            fits.Column("FLUX_Z", "E", array=np.full(n, 30.0)),
            fits.Column("EBV", "E", array=np.full(n, 0.02)),
            fits.Column("MEAN_FIBER_RA", "D", array=[t.fiber_ra for t in targets]),
            fits.Column("MEAN_FIBER_DEC", "D", array=[t.fiber_dec for t in targets]),
            fits.Column("MEAN_PSF_TO_FIBER_SPECFLUX", "E", array=[t.psf_to_fiber for t in targets]),
        ]
        hdus.append(fits.BinTableHDU.from_columns(columns, name="FIBERMAP"))
    for arm in DESI_ARMS:
        name = arm.upper()
        wavelength = _arm_wavelength(arm)
        truth = np.stack([fake_spectrum(wavelength, t.z) for t in targets]) if n else np.zeros((0, wavelength.size))
        noise = rng.normal(0.0, 1.0 / np.sqrt(ivar_value), truth.shape)
        hdu = fits.ImageHDU(wavelength, name=f"{name}_WAVELENGTH")
        hdu.header["BUNIT"] = "Angstrom"
        hdus.append(hdu)
        hdu = fits.ImageHDU((truth + noise).astype(np.float32), name=f"{name}_FLUX")
        hdu.header["BUNIT"] = "10**-17 erg/(s cm2 Angstrom)"
        hdus.append(hdu)
        hdu = fits.ImageHDU(np.full(truth.shape, ivar_value, np.float32), name=f"{name}_IVAR")
        hdu.header["BUNIT"] = "10**+34 (s2 cm4 Angstrom2) / erg2"
        hdus.append(hdu)
        hdus.append(fits.ImageHDU(np.zeros(truth.shape, np.int32), name=f"{name}_MASK"))
        if with_resolution:
            kernel = np.exp(-0.5 * (np.arange(C.DESI_RESOLUTION_NDIAG) - 5) ** 2)
            resolution = np.broadcast_to(
                (kernel / kernel.sum())[None, :, None], (n, C.DESI_RESOLUTION_NDIAG, wavelength.size)
            )
            hdus.append(fits.ImageHDU(resolution.astype(np.float32), name=f"{name}_RESOLUTION"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_redrock(path: str | Path, targets: list[FakeTarget]) -> Path:
    """Write a redrock file (PRIMARY, REDSHIFTS) for ``targets``."""
    path = Path(path)
    n = len(targets)
    columns = [
        fits.Column("TARGETID", "K", array=[t.targetid for t in targets]),
        fits.Column("Z", "D", array=[t.z for t in targets]),
        fits.Column("ZERR", "D", array=np.full(n, 1e-5)),
        fits.Column("ZWARN", "K", array=[t.zwarn for t in targets]),
        fits.Column("CHI2", "D", array=np.full(n, 8000.0)),
        fits.Column("SPECTYPE", "6A", array=[t.spectype for t in targets]),
        fits.Column("SUBTYPE", "20A", array=[""] * n),
        fits.Column("DELTACHI2", "D", array=[t.deltachi2 for t in targets]),
    ]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns, name="REDSHIFTS")]).writeto(
        path, overwrite=True
    )
    return path


def write_legacy_cutout(
    path: str | Path,
    ra: float,
    dec: float,
    *,
    size: int = 64,
    bands: str = "grz",
    pixel_scale_arcsec: float = C.LEGACY_PIXEL_SCALE_ARCSEC,
    east_left: bool = True,
    seed: int = 0,
) -> Path:
    """Write a Legacy Surveys ``fits-cutout`` file centred on (ra, dec): (len(bands), size, size) nanomaggies.

    ``east_left=True`` is the service's orientation (CD1_1 < 0: RA grows to the left); False flips it,
    so a test can check that offsets follow the WCS and not the array orientation.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    r2 = (x - (size - 1) / 2) ** 2 + (y - (size - 1) / 2) ** 2
    galaxy = np.exp(-0.5 * r2 / 4.0**2)
    image = np.stack([(i + 1) * galaxy + rng.normal(0, 0.01, galaxy.shape) for i in range(len(bands))])
    hdu = fits.PrimaryHDU(image.astype(np.float32))
    scale = pixel_scale_arcsec / 3600.0
    header = hdu.header
    header["SURVEY"] = "LegacySurvey"
    header["VERSION"] = "DR10"
    header["IMAGETYP"] = "IMAGE"
    header["BANDS"] = bands
    for i, band in enumerate(bands):
        header[f"BAND{i}"] = band
    header.update(
        {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRVAL1": ra,
            "CRVAL2": dec,
            "CRPIX1": (size + 1) / 2.0,
            "CRPIX2": (size + 1) / 2.0,
            "CD1_1": -scale if east_left else scale,
            "CD1_2": 0.0,
            "CD2_1": 0.0,
            "CD2_2": scale,
            "IMAGEW": float(size),
            "IMAGEH": float(size),
        }
    )
    hdu.writeto(path, overwrite=True)
    return path


def write_manga_cube(
    path: str | Path, ra: float, dec: float, *, n_spaxel: int = 11, n_wave: int = 200, z: float = 0.03
) -> Path:
    """Write a MaNGA DRP LOGCUBE (PRIMARY, FLUX, IVAR, MASK, LSFPOST, WAVE, SPECRES, GIMG..ZIMG) with a 3-D WCS.

    The wavelength axis starts at the MaNGA grid's first pixel (``C.MANGA_LOGLAM0``) and has ``n_wave``
    pixels; the flux of every spaxel is the fake spectrum at ``z`` (continuum and lines alike) times a
    Gaussian profile of sigma 2 spaxels and peak 1 at spaxel (n_spaxel // 2, n_spaxel // 2), so the H-alpha
    and [OIII] 5008 line fluxes are ``LINE_FLUX`` times that profile in every spaxel (no line is boosted
    anywhere). IVAR is 400 everywhere; MASK is 1024 (DRP3PIXMASK bit 10, DONOTUSE) where the profile is below
    1e-3. The GIMG..ZIMG planes hold the profile.
    """
    path = Path(path)
    loglam = C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(n_wave)
    wavelength = 10.0**loglam
    y, x = np.mgrid[0:n_spaxel, 0:n_spaxel]
    c = n_spaxel // 2
    profile = np.exp(-0.5 * ((x - c) ** 2 + (y - c) ** 2) / 2.0**2)
    flux = fake_spectrum(wavelength, z)[:, None, None] * profile[None]
    primary = fits.PrimaryHDU()
    primary.header.update({"OBJRA": ra, "OBJDEC": dec, "IFURA": ra, "IFUDEC": dec, "PLATEIFU": "0000-0000"})
    scale = C.MANGA_SPAXEL_ARCSEC / 3600.0
    wcs_cards = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CTYPE3": "WAVE-LOG",
        "CRPIX1": c + 1.0,
        "CRPIX2": c + 1.0,
        "CRPIX3": 1.0,
        "CRVAL1": ra,
        "CRVAL2": dec,
        "CRVAL3": float(wavelength[0]),
        "CD1_1": -scale,
        "CD2_2": scale,
        "CD3_3": float(wavelength[0] * np.log(10) * C.MANGA_LOGLAM_STEP),
        "CUNIT1": "deg",
        "CUNIT2": "deg",
        "CUNIT3": "Angstrom",
    }
    hdus = [primary]
    for name, data, bunit in (
        ("FLUX", flux.astype(np.float32), "1E-17 erg/s/cm^2/Ang/spaxel"),
        ("IVAR", np.full(flux.shape, 400.0, np.float32), "1E+34 (erg/s/cm^2/Ang/spaxel)^-2"),
        ("MASK", np.where(profile[None] > 1e-3, 0, 1024).astype(np.int32) * np.ones((n_wave, 1, 1), np.int32), ""),
        ("LSFPOST", np.full(flux.shape, 1.0, np.float32), "Angstrom"),
    ):
        hdu = fits.ImageHDU(data, name=name)
        hdu.header.update(wcs_cards)
        if bunit:
            hdu.header["BUNIT"] = bunit
        hdus.append(hdu)
    hdus.append(fits.ImageHDU(wavelength, name="WAVE"))
    hdus.append(fits.ImageHDU(np.full(n_wave, 2000.0), name="SPECRES"))
    for band in "GRIZ":
        hdus.append(fits.ImageHDU(profile.astype(np.float32), name=f"{band}IMG"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def write_sdss_spec(path: str | Path, *, z: float = 0.1, ra: float = 180.0, dec: float = 10.0) -> Path:
    """Write an SDSS spec-PLATE-MJD-FIBER.fits file (PRIMARY, COADD, SPECOBJ) with the fake spectrum at ``z``."""
    path = Path(path)
    loglam = np.log10(C.SDSS_WAVELENGTH_MIN_A) + C.SDSS_LOGLAM_STEP * np.arange(3000)
    flux = fake_spectrum(10.0**loglam, z).astype(np.float32)
    n = loglam.size
    coadd = fits.BinTableHDU.from_columns(
        [
            fits.Column("flux", "E", array=flux),
            fits.Column("loglam", "E", array=loglam.astype(np.float32)),
            fits.Column("ivar", "E", array=np.full(n, 25.0, np.float32)),
            fits.Column("and_mask", "J", array=np.zeros(n, np.int32)),
            fits.Column("or_mask", "J", array=np.zeros(n, np.int32)),
            fits.Column("wdisp", "E", array=np.ones(n, np.float32)),
            fits.Column("sky", "E", array=np.zeros(n, np.float32)),
            fits.Column("model", "E", array=flux),
        ],
        name="COADD",
    )
    specobj = fits.BinTableHDU.from_columns(
        [
            fits.Column("PLATE", "J", array=[1000]),
            fits.Column("MJD", "J", array=[52000]),
            fits.Column("FIBERID", "J", array=[1]),
            fits.Column("Z", "E", array=[z]),
            fits.Column("PLUG_RA", "D", array=[ra]),
            fits.Column("PLUG_DEC", "D", array=[dec]),
            fits.Column("CLASS", "6A", array=["GALAXY"]),
        ],
        name="SPECOBJ",
    )
    fits.HDUList([fits.PrimaryHDU(), coadd, specobj]).writeto(path, overwrite=True)
    return path


def write_desi_folder(
    root: str | Path,
    n_files: int = 2,
    n_per_file: int = 3,
    *,
    image_size: int = 32,
    seed: int = 0,
    name_cutouts_by_targetid: bool = True,
) -> dict[int, FakeTarget]:
    """Write ``n_files`` coadd + redrock pairs with ``n_per_file`` good targets each, and one cutout per target.

    Layout: ``root/healpix/coadd-main-dark-{hp}.fits``, ``redrock-main-dark-{hp}.fits`` and
    ``root/cutouts/cutout-{TARGETID}.fits`` (or ``cutouts/ls-{i}.fits``, matched by sky position,
    with ``name_cutouts_by_targetid=False``). The cutouts are centred on the targets.

    Returns
    -------
    dict
        TARGETID -> FakeTarget of every target written.
    """
    root = Path(root)
    (root / "healpix").mkdir(parents=True, exist_ok=True)
    (root / "cutouts").mkdir(parents=True, exist_ok=True)
    truth: dict[int, FakeTarget] = {}
    for f in range(n_files):
        healpix = 10000 + f
        targets = make_targets(n_per_file, seed=seed + f, first_targetid=39633345008634465 + 1000 * f)
        write_desi_coadd(root / "healpix" / f"coadd-main-dark-{healpix}.fits", targets, healpix=healpix, seed=seed + f)
        write_redrock(root / "healpix" / f"redrock-main-dark-{healpix}.fits", targets)
        for i, target in enumerate(targets):
            name = f"cutout-{target.targetid}.fits" if name_cutouts_by_targetid else f"ls-{f}-{i}.fits"
            write_legacy_cutout(root / "cutouts" / name, target.ra, target.dec, size=image_size, seed=seed + i)
            truth[target.targetid] = target
    return truth
