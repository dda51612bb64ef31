"""Writers of small survey files in the real layouts, for tests and benchmarks.

They make fake content and write it through the format writers of :mod:`galspec_hf.io`, in the layouts
the readers expect from the real archives:
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

from .. import constants as C
from ..io.desi import DESI_ARMS
from ..io.desi import write_desi_coadd as _write_desi_coadd
from ..io.desi import write_redrock as _write_redrock
from ..io.legacy import write_legacy_cutout as _write_legacy_cutout
from ..io.manga import MANGA_DONOTUSE
from ..io.manga import write_manga_cube as _write_manga_cube
from ..io.sdss import write_sdss_spec as _write_sdss_spec
from ..sky import fiber_sky_position

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
        return float(fiber_sky_position(self.ra, self.dec, *self.fiber_offset_arcsec)[0])

    @property
    def fiber_dec(self) -> float:
        return float(fiber_sky_position(self.ra, self.dec, *self.fiber_offset_arcsec)[1])


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
    rng = np.random.default_rng(seed)
    header = {"SPGRP": "healpix", "SPGRPVAL": healpix, "SURVEY": survey, "PROGRAM": program, "HPXPIXEL": healpix}
    header["HPXNSIDE"] = C.DESI_HEALPIX_NSIDE
    n = len(targets)
    fibermap = None
    if with_fibermap:
        fibermap = {
            "TARGETID": [t.targetid for t in targets],
            "COADD_FIBERSTATUS": [t.coadd_fiberstatus for t in targets],
            "TARGET_RA": [t.ra for t in targets],
            "TARGET_DEC": [t.dec for t in targets],
            "OBJTYPE": ["TGT"] * n,
            "FLUX_G": np.full(n, 10.0),
            "FLUX_R": np.full(n, 20.0),
            "FLUX_Z": np.full(n, 30.0),
            "EBV": np.full(n, 0.02),
            "MEAN_FIBER_RA": [t.fiber_ra for t in targets],
            "MEAN_FIBER_DEC": [t.fiber_dec for t in targets],
            "MEAN_PSF_TO_FIBER_SPECFLUX": [t.psf_to_fiber for t in targets],
        }
    arms = {}
    for arm in DESI_ARMS:
        wavelength = _arm_wavelength(arm)
        truth = np.stack([fake_spectrum(wavelength, t.z) for t in targets]) if n else np.zeros((0, wavelength.size))
        noise = rng.normal(0.0, 1.0 / np.sqrt(ivar_value), truth.shape)
        arms[arm] = {"wavelength": wavelength, "flux": truth + noise, "ivar": np.full(truth.shape, ivar_value)}
        if with_resolution:
            kernel = np.exp(-0.5 * (np.arange(C.DESI_RESOLUTION_NDIAG) - 5) ** 2)
            arms[arm]["resolution"] = np.broadcast_to(
                (kernel / kernel.sum())[None, :, None], (n, C.DESI_RESOLUTION_NDIAG, wavelength.size)
            )
    return _write_desi_coadd(path, arms, header=header, fibermap=fibermap)


def write_redrock(path: str | Path, targets: list[FakeTarget]) -> Path:
    """Write a redrock file (PRIMARY, REDSHIFTS) for ``targets``."""
    n = len(targets)
    redshifts = {
        "TARGETID": [t.targetid for t in targets],
        "Z": [t.z for t in targets],
        "ZERR": np.full(n, 1e-5),
        "ZWARN": [t.zwarn for t in targets],
        "CHI2": np.full(n, 8000.0),
        "SPECTYPE": [t.spectype for t in targets],
        "SUBTYPE": [""] * n,
        "DELTACHI2": [t.deltachi2 for t in targets],
    }
    return _write_redrock(path, redshifts)


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
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    r2 = (x - (size - 1) / 2) ** 2 + (y - (size - 1) / 2) ** 2
    galaxy = np.exp(-0.5 * r2 / 4.0**2)
    image = np.stack([(i + 1) * galaxy + rng.normal(0, 0.01, galaxy.shape) for i in range(len(bands))])
    return _write_legacy_cutout(
        path,
        image,
        ra_deg=ra,
        dec_deg=dec,
        bands=bands,
        pixel_scale_arcsec=pixel_scale_arcsec,
        east_left=east_left,
        cards={"VERSION": "DR10"},
    )


def write_manga_cube(
    path: str | Path, ra: float, dec: float, *, n_spaxel: int = 11, n_wave: int = 200, z: float = 0.03
) -> Path:
    """Write a MaNGA DRP LOGCUBE (PRIMARY, FLUX, IVAR, MASK, LSFPOST, WAVE, SPECRES, GIMG..ZIMG) with a 3-D WCS.

    The wavelength axis starts at the MaNGA grid's first pixel (``C.MANGA_LOGLAM0``) and has ``n_wave``
    pixels; the flux of every spaxel is the fake spectrum at ``z`` (continuum and lines alike) times a
    Gaussian profile of sigma 2 spaxels and peak 1 at spaxel (n_spaxel // 2, n_spaxel // 2), so the H-alpha
    and [OIII] 5008 line fluxes are ``LINE_FLUX`` times that profile in every spaxel (no line is boosted
    anywhere). IVAR is 400 everywhere; MASK is 1024 (DRP3PIXMASK bit 10, DONOTUSE) where the profile is below
    1e-3. The GIMG..ZIMG planes hold the profile. The spaxel WCS puts (ra, dec) at the array centre (the
    profile's peak for an odd ``n_spaxel``).
    """
    loglam = C.MANGA_LOGLAM0 + C.MANGA_LOGLAM_STEP * np.arange(n_wave)
    wavelength = 10.0**loglam
    y, x = np.mgrid[0:n_spaxel, 0:n_spaxel]
    c = n_spaxel // 2
    profile = np.exp(-0.5 * ((x - c) ** 2 + (y - c) ** 2) / 2.0**2)
    flux = fake_spectrum(wavelength, z)[:, None, None] * profile[None]
    mask = np.where(profile[None] > 1e-3, 0, MANGA_DONOTUSE).astype(np.int32) * np.ones((n_wave, 1, 1), np.int32)
    return _write_manga_cube(
        path,
        wavelength,
        flux,
        np.full(flux.shape, 400.0),
        mask,
        ra_deg=ra,
        dec_deg=dec,
        spaxel_arcsec=C.MANGA_SPAXEL_ARCSEC,
        primary_header={"OBJRA": ra, "OBJDEC": dec, "IFURA": ra, "IFUDEC": dec, "PLATEIFU": "0000-0000"},
        cube_hdus={"LSFPOST": (np.full(flux.shape, 1.0), "Angstrom")},
        extra_hdus={
            "SPECRES": np.full(n_wave, 2000.0),
            **{f"{band}IMG": profile.astype(np.float32) for band in "GRIZ"},
        },
    )


def write_sdss_spec(path: str | Path, *, z: float = 0.1, ra: float = 180.0, dec: float = 10.0) -> Path:
    """Write an SDSS spec-PLATE-MJD-FIBER.fits file (PRIMARY, COADD, SPECOBJ) with the fake spectrum at ``z``."""
    loglam = np.log10(C.SDSS_WAVELENGTH_MIN_A) + C.SDSS_LOGLAM_STEP * np.arange(3000)
    flux = fake_spectrum(10.0**loglam, z).astype(np.float32)
    n = loglam.size
    coadd = {
        "flux": flux,
        "loglam": loglam,
        "ivar": np.full(n, 25.0),
        "and_mask": np.zeros(n),
        "or_mask": np.zeros(n),
        "wdisp": np.ones(n),
        "sky": np.zeros(n),
        "model": flux,
    }
    specobj = {"PLATE": [1000], "MJD": [52000], "FIBERID": [1], "Z": [z], "PLUG_RA": [ra], "PLUG_DEC": [dec]}
    specobj["CLASS"] = ["GALAXY"]
    return _write_sdss_spec(path, coadd, specobj)


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
