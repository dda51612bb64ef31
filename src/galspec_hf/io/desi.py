"""DESI spectra: healpix coadd files (``coadd-*.fits``) and redrock catalogues (``redrock-*.fits``).

Readers return the package conventions (docs/ARCHITECTURE.md): flux density in 1e-17 erg/s/cm2/A, vacuum
Angstrom in the observed frame, fiber offsets in arcsec east (+RA) and north (+Dec). Writers take arrays and
header values and write the real HDU layout, with the FIBERMAP, EXP_FIBERMAP, SCORES, REDSHIFTS and TSNR2
columns named and typed as in the real files (../shared/data/desi/coadd-*.fits, redrock-*.fits).

read_desi_coadd   / write_desi_coadd   b, r, z arms (merged onto the 7781-pixel model grid when read)
read_redrock      / write_redrock      REDSHIFTS table (+ FIBERMAP, EXP_FIBERMAP, TSNR2 when written)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .. import constants as C
from ..errors import GalSpecFormatError, GalSpecFormatWarning
from ..sky import fiber_offset_arcsec
from ._fits import _image, _open_fits, _strings, _table, image_hdu, primary_hdu, table_hdu, write_hdus

__all__ = [
    "DESI_ARMS",
    "EXP_FIBERMAP_COLUMNS",
    "FIBERMAP_COLUMNS",
    "REDSHIFTS_COLUMNS",
    "SCORES_COLUMNS",
    "TSNR2_COLUMNS",
    "DesiCoadd",
    "RedrockCatalog",
    "desi_wavelength_grid",
    "fiber_spectrum",
    "parse_desi_healpix_name",
    "read_desi_coadd",
    "read_redrock",
    "target_row",
    "write_desi_coadd",
    "write_redrock",
]

DESI_ARMS = ("b", "r", "z")

#: FIBERMAP columns of a DESI coadd, names and FITS formats as in the real file ../shared/data/desi/coadd-*.fits.
FIBERMAP_COLUMNS = (
    ("TARGETID", "K"), ("PETAL_LOC", "I"), ("DEVICE_LOC", "J"), ("LOCATION", "K"), ("FIBER", "J"),
    ("COADD_FIBERSTATUS", "J"), ("TARGET_RA", "D"), ("TARGET_DEC", "D"), ("PMRA", "E"), ("PMDEC", "E"),
    ("REF_EPOCH", "E"), ("LAMBDA_REF", "E"), ("FA_TARGET", "K"), ("FA_TYPE", "B"), ("OBJTYPE", "3A"),
    ("FIBERASSIGN_X", "E"), ("FIBERASSIGN_Y", "E"), ("PRIORITY", "J"), ("SUBPRIORITY", "D"), ("OBSCONDITIONS", "J"),
    ("RELEASE", "I"), ("BRICKNAME", "8A"), ("BRICKID", "J"), ("BRICK_OBJID", "J"), ("MORPHTYPE", "4A"), ("EBV", "E"),
    ("FLUX_G", "E"), ("FLUX_R", "E"), ("FLUX_Z", "E"), ("FLUX_W1", "E"), ("FLUX_W2", "E"), ("FLUX_IVAR_G", "E"),
    ("FLUX_IVAR_R", "E"), ("FLUX_IVAR_Z", "E"), ("FLUX_IVAR_W1", "E"), ("FLUX_IVAR_W2", "E"), ("FIBERFLUX_G", "E"),
    ("FIBERFLUX_R", "E"), ("FIBERFLUX_Z", "E"), ("FIBERTOTFLUX_G", "E"), ("FIBERTOTFLUX_R", "E"),
    ("FIBERTOTFLUX_Z", "E"), ("MASKBITS", "I"), ("SERSIC", "E"), ("SHAPE_R", "E"), ("SHAPE_E1", "E"),
    ("SHAPE_E2", "E"), ("REF_ID", "K"), ("REF_CAT", "2A"), ("GAIA_PHOT_G_MEAN_MAG", "E"),
    ("GAIA_PHOT_BP_MEAN_MAG", "E"), ("GAIA_PHOT_RP_MEAN_MAG", "E"), ("PARALLAX", "E"), ("PHOTSYS", "1A"),
    ("PRIORITY_INIT", "K"), ("NUMOBS_INIT", "K"), ("SV1_DESI_TARGET", "K"), ("SV1_BGS_TARGET", "K"),
    ("SV1_MWS_TARGET", "K"), ("SV1_SCND_TARGET", "K"), ("DESI_TARGET", "K"), ("BGS_TARGET", "K"),
    ("MWS_TARGET", "K"), ("PLATE_RA", "D"), ("PLATE_DEC", "D"), ("TILEID", "J"), ("COADD_NUMEXP", "I"),
    ("COADD_EXPTIME", "E"), ("COADD_NUMNIGHT", "I"), ("COADD_NUMTILE", "I"), ("MEAN_DELTA_X", "E"),
    ("RMS_DELTA_X", "E"), ("MEAN_DELTA_Y", "E"), ("RMS_DELTA_Y", "E"), ("MEAN_FIBER_RA", "D"), ("STD_FIBER_RA", "E"),
    ("MEAN_FIBER_DEC", "D"), ("STD_FIBER_DEC", "E"), ("MEAN_PSF_TO_FIBER_SPECFLUX", "E"), ("MEAN_FIBER_X", "E"),
    ("MEAN_FIBER_Y", "E"),
)  # fmt: skip
#: EXP_FIBERMAP columns written (a subset of the real file's, same names and formats).
EXP_FIBERMAP_COLUMNS = (
    ("TARGETID", "K"), ("NIGHT", "J"), ("EXPID", "J"), ("TILEID", "J"), ("EXPTIME", "D"), ("FIBER", "J"),
    ("FIBERSTATUS", "J"), ("FIBER_RA", "D"), ("FIBER_DEC", "D"),
)  # fmt: skip
#: SCORES columns written (a subset of the real file's): median flux and S/N per arm.
SCORES_COLUMNS = (("TARGETID", "K"),) + tuple(
    (f"{kind}_{arm.upper()}", "E") for arm in DESI_ARMS for kind in ("MEDIAN_COADD_FLUX", "MEDIAN_COADD_SNR")
)
#: REDSHIFTS columns of a redrock file, names and formats as in ../shared/data/desi/redrock-*.fits.
REDSHIFTS_COLUMNS = (
    ("TARGETID", "K"), ("Z", "D"), ("ZERR", "D"), ("ZWARN", "K"), ("CHI2", "D"), ("COEFF", "10D"), ("NPIXELS", "K"),
    ("SPECTYPE", "6A"), ("SUBTYPE", "20A"), ("NCOEFF", "K"), ("DELTACHI2", "D"),
)  # fmt: skip
#: TSNR2 columns written (a subset of the real file's).
TSNR2_COLUMNS = (("TARGETID", "K"), ("TSNR2_BGS", "E"))
#: BUNIT of the arm HDUs, as in the real coadd.
_ARM_UNITS = {
    "WAVELENGTH": "Angstrom",
    "FLUX": "10**-17 erg/(s cm2 Angstrom)",
    "IVAR": "10**+34 (s2 cm4 Angstrom2) / erg2",
}


def desi_wavelength_grid() -> np.ndarray:
    """The merged DESI model grid: 3600-9824 A at 0.8 A, shape (7781,), vacuum Angstrom, float64."""
    return C.DESI_WAVELENGTH_MIN_A + C.DESI_WAVELENGTH_STEP_A * np.arange(C.DESI_NUM_PIXELS, dtype=np.float64)


# ----------------------------------------------------------------------------------------
# DESI coadd: reader
# ----------------------------------------------------------------------------------------
@dataclass
class DesiCoadd:
    """Spectra of one DESI coadd file, merged onto the model grid.

    Attributes
    ----------
    path : Path
    targetid : ndarray, shape (N,), int64
    wavelength : ndarray, shape (7781,), float64
        Vacuum Angstrom, 3600-9824 A at 0.8 A.
    flux : ndarray, shape (N, 7781), float32
        1e-17 erg/s/cm2/A; the arms are merged by inverse-variance weighting where they overlap.
    ivar : ndarray, shape (N, 7781), float32
        Inverse variance of ``flux``; 0 where no arm has a good pixel.
    mask : ndarray, shape (N, 7781), int32
        DESI mask bits: 0 where at least one arm has a usable pixel (mask 0, finite flux, ivar > 0),
        else the bitwise OR of the masks of the arms covering the pixel.
    target_ra, target_dec, fiber_ra, fiber_dec : ndarray, shape (N,), float64
        Degrees; fiber position from FIBERMAP MEAN_FIBER_RA/DEC. NaN when the file has no FIBERMAP.
    fiber_offset_arcsec : ndarray, shape (N, 2), float64
        Fiber minus target, arcsec east and north:
        ((MEAN_FIBER_RA - TARGET_RA) cos(TARGET_DEC), MEAN_FIBER_DEC - TARGET_DEC) * 3600.
    coadd_fiberstatus : ndarray, shape (N,), int64
        FIBERMAP COADD_FIBERSTATUS (0 = good); -1 when the file has no FIBERMAP.
    psf_to_fiber : ndarray, shape (N,), float64
        FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX. DESI calibrates ``flux`` for point sources; ``flux *
        psf_to_fiber`` is desispec's fiber flux, the flux in a 1.5" fiber in 1" FWHM seeing (the Legacy
        Surveys FIBERFLUX definition; desispec.fiberfluxcorr.psf_to_fiber_flux_correction). NaN when the
        file has no FIBERMAP or no such column; not checked here (a data build refuses a spectrum whose
        factor is not finite and > 0).
    n_nonfinite_flux, n_negative_ivar : ndarray, shape (N,), int64
        Raw-arm pixels with NaN/inf flux or ivar < 0 (such pixels get ivar 0 in the merge); a data
        build uses these to reject broken spectra.
    fibermap : astropy.table.Table or None
        The FIBERMAP table as stored.
    survey, program : str
        From the primary header (SURVEY, PROGRAM) or the ``coadd-{survey}-{program}-{healpix}``
        file name; "" if unknown.
    healpix : int
        HPXPIXEL header keyword or file name; -1 if unknown.
    arms : dict or None
        With ``keep_arms=True``: ``{"b": {"wavelength", "flux", "ivar", "mask"}, ...}`` as stored.
    """

    path: Path
    targetid: np.ndarray
    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    target_ra: np.ndarray
    target_dec: np.ndarray
    fiber_ra: np.ndarray
    fiber_dec: np.ndarray
    fiber_offset_arcsec: np.ndarray
    coadd_fiberstatus: np.ndarray
    n_nonfinite_flux: np.ndarray
    n_negative_ivar: np.ndarray
    psf_to_fiber: np.ndarray | None = None
    fibermap: Table | None = None
    survey: str = ""
    program: str = ""
    healpix: int = -1
    arms: dict | None = None

    def __len__(self) -> int:
        return len(self.targetid)


_HEALPIX_NAME = re.compile(r"^(?:coadd|redrock)-(?P<survey>[a-z0-9]+)-(?P<program>[a-z0-9]+)-(?P<healpix>\d+)\.fits")


def fiber_spectrum(coadd: DesiCoadd, index: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The flux that entered the fiber of spectrum `index`: (flux, ivar, psf_to_fiber) on the coadd's grid.

    DESI calibrates spectra for point sources; flux x MEAN_PSF_TO_FIBER_SPECFLUX is the fiber flux (the flux in a
    1.5" fiber in 1" seeing, the Legacy Surveys FIBERFLUX definition), and its ivar is ivar / factor^2. Raises
    GalSpecFormatError naming the file and column when the factor is missing or not finite and > 0.
    """
    factor = float(coadd.psf_to_fiber[index]) if coadd.psf_to_fiber is not None else float("nan")
    if not (np.isfinite(factor) and factor > 0):
        raise GalSpecFormatError(
            f"{coadd.path}: HDU FIBERMAP: MEAN_PSF_TO_FIBER_SPECFLUX = {factor} for TARGETID "
            f"{int(coadd.targetid[index])} (missing column gives nan), expected a finite point-source fiber fraction "
            "> 0 to convert the point-source flux to the fiber flux"
        )
    flux = (coadd.flux[index] * factor).astype(np.float32)
    ivar = (coadd.ivar[index] / factor**2).astype(np.float32)
    return flux, ivar, factor


def missing_fibermap_error(path: str | Path, why: str = "") -> GalSpecFormatError:
    """The error for a coadd without the FIBERMAP a caller needs (target IDs and fiber positions); `why` ends the
    parenthesis (e.g. "; the coadd given was read without it")."""
    return GalSpecFormatError(f"{path}: missing HDU FIBERMAP (expected target IDs and fiber positions{why})")


def target_row(coadd: DesiCoadd, targetid: int, path: str | Path | None = None) -> int:
    """The row (spectrum index) of `targetid` in `coadd`, as a Python int; the first such row if it repeats.

    `path` names the file in the error (default ``coadd.path``). Raises GalSpecFormatError naming the file, the
    HDU FIBERMAP, the TARGETID and how many targets the file has when `targetid` is not there.
    """
    rows = np.flatnonzero(coadd.targetid == int(targetid))
    if rows.size == 0:
        raise GalSpecFormatError(
            f"{coadd.path if path is None else path}: HDU FIBERMAP: TARGETID {int(targetid)} is not in the file "
            f"(HDU FIBERMAP has {len(coadd.targetid)} targets)"
        )
    return int(rows[0])


def parse_desi_healpix_name(path: str | Path) -> tuple[str, str, int] | None:
    """``coadd-main-dark-10032.fits`` -> ("main", "dark", 10032); None for other names (e.g. tile coadds)."""
    match = _HEALPIX_NAME.match(Path(path).name)
    if match is None:
        return None
    return match["survey"], match["program"], int(match["healpix"])


def _arm_grid_index(wavelength: np.ndarray, path: Path, hdu_name: str) -> np.ndarray:
    """Indices of an arm's pixels on the merged grid; the arms share its 0.8 A lattice."""
    step, start = C.DESI_WAVELENGTH_STEP_A, C.DESI_WAVELENGTH_MIN_A
    index = np.rint((wavelength - start) / step).astype(np.int64)
    on_lattice = np.abs(start + step * index - wavelength) < 0.01 * step
    if not np.all(on_lattice) or index.min() < 0 or index.max() >= C.DESI_NUM_PIXELS:
        raise GalSpecFormatError(
            f"{path}: HDU {hdu_name}: expected vacuum wavelengths on the {step} A lattice within "
            f"{start}-{C.DESI_WAVELENGTH_MAX_A} A, got {wavelength.min():.2f}-{wavelength.max():.2f} A"
        )
    return index


#: Coadd FIBERMAP column with the point-source fiber fraction (desispec coaddition: the mean over exposures of
#: the frames' PSF_TO_FIBER_SPECFLUX).
_PSF_TO_FIBER_COLUMN = "MEAN_PSF_TO_FIBER_SPECFLUX"


def read_desi_coadd(path: str | Path, *, require_fibermap: bool = False, keep_arms: bool = False) -> DesiCoadd:
    """Read a DESI coadd file and merge its b, r, z arms onto the 7781-pixel model grid.

    Parameters
    ----------
    path : str or Path
        A ``coadd-*.fits`` file (HDUs FIBERMAP, {B,R,Z}_WAVELENGTH, _FLUX, _IVAR, _MASK, ...).
    require_fibermap : bool
        If True a file without FIBERMAP is refused; otherwise it is read with a
        :class:`GalSpecFormatWarning` and NaN fiber positions.
    keep_arms : bool
        Also return the per-arm arrays as stored (``DesiCoadd.arms``).

    Returns
    -------
    DesiCoadd
        ``flux``, ``ivar``, ``mask`` of shape (N, 7781). Where arms overlap, the merged flux is
        sum(ivar_arm * flux_arm) / sum(ivar_arm) over pixels with mask 0, finite flux and ivar > 0,
        and the merged ivar is sum(ivar_arm). The flux is the file's, calibrated for point sources;
        ``psf_to_fiber`` (FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX) converts it to the fiber flux.

    Raises
    ------
    GalSpecFormatError
        Unreadable file, missing HDU or column, arrays of inconsistent shape, wavelengths off the grid.
    """
    path = Path(path)
    with _open_fits(path) as hdul:
        n_pix = C.DESI_NUM_PIXELS
        sum_ivar = sum_flux = mask_or = None
        n_nonfinite = n_negative = None
        arms: dict = {}
        n_spec = None
        for arm in DESI_ARMS:
            name = arm.upper()
            wavelength = _image(hdul, path, f"{name}_WAVELENGTH", 1, f"the {arm} arm wavelength", np.float64)
            flux = _image(hdul, path, f"{name}_FLUX", 2, f"the {arm} arm flux (N, n_wavelength)")
            ivar = _image(hdul, path, f"{name}_IVAR", 2, f"the {arm} arm inverse variance (N, n_wavelength)")
            if f"{name}_MASK" in hdul:
                mask = _image(hdul, path, f"{name}_MASK", 2, f"the {arm} arm mask (N, n_wavelength)", np.int32)
            else:
                mask = np.zeros(flux.shape, np.int32)
            for hdu_name, array in ((f"{name}_FLUX", flux), (f"{name}_IVAR", ivar), (f"{name}_MASK", mask)):
                if array.shape[1] != wavelength.size or (n_spec is not None and array.shape[0] != n_spec):
                    raise GalSpecFormatError(
                        f"{path}: HDU {hdu_name}: expected shape ({n_spec or 'N'}, {wavelength.size}) "
                        f"to match {name}_WAVELENGTH and the other arms, got {array.shape}"
                    )
            n_spec = flux.shape[0]
            index = _arm_grid_index(wavelength, path, f"{name}_WAVELENGTH")
            if sum_ivar is None:
                sum_ivar = np.zeros((n_spec, n_pix), np.float64)
                sum_flux = np.zeros((n_spec, n_pix), np.float64)
                mask_or = np.zeros((n_spec, n_pix), np.int32)
                n_nonfinite = np.zeros(n_spec, np.int64)
                n_negative = np.zeros(n_spec, np.int64)
            finite = np.isfinite(flux) & np.isfinite(ivar)
            n_nonfinite += (~np.isfinite(flux)).sum(axis=1)
            n_negative += (ivar < 0).sum(axis=1)
            weight = np.where(finite & (mask == 0) & (ivar > 0), ivar, 0.0)
            sum_ivar[:, index] += weight
            sum_flux[:, index] += weight * np.where(finite, flux, 0.0)
            mask_or[:, index] |= mask
            if keep_arms:
                arms[arm] = {"wavelength": wavelength, "flux": flux, "ivar": ivar, "mask": mask}

        with np.errstate(invalid="ignore", divide="ignore"):
            merged_flux = np.where(sum_ivar > 0, sum_flux / sum_ivar, 0.0).astype(np.float32)
        merged_mask = np.where(sum_ivar > 0, 0, mask_or).astype(np.int32)
        merged_ivar = sum_ivar.astype(np.float32)

        fibermap = None
        if "FIBERMAP" in hdul:
            columns = ("TARGETID", "TARGET_RA", "TARGET_DEC", "MEAN_FIBER_RA", "MEAN_FIBER_DEC")
            data = _table(hdul, path, "FIBERMAP", columns, "one row per spectrum with target and fiber positions")
            if len(data) != n_spec:
                raise GalSpecFormatError(
                    f"{path}: HDU FIBERMAP: expected {n_spec} rows (one per spectrum), got {len(data)}"
                )
            fibermap = Table(data)
            targetid = np.asarray(data["TARGETID"], np.int64)
            target_ra = np.asarray(data["TARGET_RA"], np.float64)
            target_dec = np.asarray(data["TARGET_DEC"], np.float64)
            fiber_ra = np.asarray(data["MEAN_FIBER_RA"], np.float64)
            fiber_dec = np.asarray(data["MEAN_FIBER_DEC"], np.float64)
            names = {n.upper() for n in data.columns.names}
            status = (
                np.asarray(data["COADD_FIBERSTATUS"], np.int64)
                if "COADD_FIBERSTATUS" in names
                else np.zeros(n_spec, np.int64)
            )
            psf_to_fiber = (
                np.asarray(data[_PSF_TO_FIBER_COLUMN], np.float64)
                if _PSF_TO_FIBER_COLUMN in names
                else np.full(n_spec, np.nan)
            )
        else:
            if require_fibermap:
                raise missing_fibermap_error(path)
            warnings.warn(
                f"{path}: no FIBERMAP HDU; spectra read without target IDs or fiber positions",
                GalSpecFormatWarning,
                stacklevel=2,
            )
            targetid = np.full(n_spec, -1, np.int64)
            if "SCORES" in hdul and "TARGETID" in hdul["SCORES"].columns.names:
                targetid = np.asarray(hdul["SCORES"].data["TARGETID"], np.int64)
            target_ra = target_dec = fiber_ra = fiber_dec = np.full(n_spec, np.nan)
            status = np.full(n_spec, -1, np.int64)
            psf_to_fiber = np.full(n_spec, np.nan)

        header = hdul[0].header
        survey, program, healpix = str(header.get("SURVEY", "")), str(header.get("PROGRAM", "")), -1
        if "HPXPIXEL" in header:
            healpix = int(header["HPXPIXEL"])
        parsed = parse_desi_healpix_name(path)
        if parsed is not None:
            survey, program, healpix = (
                survey or parsed[0],
                program or parsed[1],
                healpix if healpix >= 0 else parsed[2],
            )

    return DesiCoadd(
        path=path,
        targetid=targetid,
        wavelength=desi_wavelength_grid(),
        flux=merged_flux,
        ivar=merged_ivar,
        mask=merged_mask,
        target_ra=target_ra,
        target_dec=target_dec,
        fiber_ra=fiber_ra,
        fiber_dec=fiber_dec,
        fiber_offset_arcsec=fiber_offset_arcsec(target_ra, target_dec, fiber_ra, fiber_dec),
        coadd_fiberstatus=status,
        n_nonfinite_flux=n_nonfinite,
        n_negative_ivar=n_negative,
        psf_to_fiber=psf_to_fiber,
        fibermap=fibermap,
        survey=survey,
        program=program,
        healpix=healpix,
        arms=arms if keep_arms else None,
    )


# ----------------------------------------------------------------------------------------
# DESI redrock
# ----------------------------------------------------------------------------------------
@dataclass
class RedrockCatalog:
    """The REDSHIFTS table of a redrock file.

    Attributes
    ----------
    path : Path
    targetid : ndarray, shape (N,), int64
    z, zerr : ndarray, shape (N,), float64
    zwarn : ndarray, shape (N,), int64
        DESI convention: 0 = no warning (MultimodalUniverse stores the inverse as a bool).
    spectype : ndarray, shape (N,), str
        "GALAXY", "QSO" or "STAR".
    deltachi2 : ndarray, shape (N,), float64
    """

    path: Path
    targetid: np.ndarray
    z: np.ndarray
    zerr: np.ndarray
    zwarn: np.ndarray
    spectype: np.ndarray
    deltachi2: np.ndarray

    def __len__(self) -> int:
        return len(self.targetid)


def read_redrock(path: str | Path) -> RedrockCatalog:
    """Read the REDSHIFTS table of a DESI redrock file (TARGETID, Z, ZERR, ZWARN, SPECTYPE, DELTACHI2)."""
    path = Path(path)
    columns = ("TARGETID", "Z", "ZERR", "ZWARN", "SPECTYPE", "DELTACHI2")
    with _open_fits(path) as hdul:
        data = _table(hdul, path, "REDSHIFTS", columns, "redrock redshifts")
        return RedrockCatalog(
            path=path,
            targetid=np.asarray(data["TARGETID"], np.int64),
            z=np.asarray(data["Z"], np.float64),
            zerr=np.asarray(data["ZERR"], np.float64),
            zwarn=np.asarray(data["ZWARN"], np.int64),
            spectype=np.char.strip(_strings(data["SPECTYPE"])),
            deltachi2=np.asarray(data["DELTACHI2"], np.float64),
        )


# ----------------------------------------------------------------------------------------
# Writers
# ----------------------------------------------------------------------------------------
def _tables(specs, all_columns: bool) -> list[fits.BinTableHDU]:
    """Table HDUs for each (extname, data model, values or None) of ``specs``; None is no HDU."""
    return [
        table_hdu(name, columns, values, all_columns=all_columns)
        for name, columns, values in specs
        if values is not None
    ]


def write_desi_coadd(
    path: str | Path,
    arms: Mapping[str, Mapping[str, np.ndarray]],
    *,
    header: Mapping | fits.Header | None = None,
    fibermap: Mapping[str, np.ndarray] | None = None,
    exp_fibermap: Mapping[str, np.ndarray] | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
    all_columns: bool = False,
) -> Path:
    """Write a DESI coadd file: PRIMARY, FIBERMAP, EXP_FIBERMAP, then per arm {B,R,Z}_WAVELENGTH, _FLUX, _IVAR,
    _MASK (and _RESOLUTION), then SCORES; a table given as None is left out.

    Parameters
    ----------
    arms : mapping
        Arm ("b", "r", "z") -> {"wavelength": (L,) vacuum Angstrom, "flux": (N, L) 1e-17 erg/s/cm2/A (point-source
        calibrated, as DESI's), "ivar": (N, L), optional "mask": (N, L) int (default 0), optional "resolution":
        (N, ndiag, L)}: the layout :func:`read_desi_coadd` returns with ``keep_arms=True``.
    header : mapping or Header, optional
        Primary header cards, keyword -> value or (value, comment) (e.g. SURVEY, PROGRAM, HPXPIXEL).
    fibermap, exp_fibermap, scores : mapping, optional
        Column name -> values (one per spectrum) of the FIBERMAP, EXP_FIBERMAP and SCORES tables; names and
        formats from :data:`FIBERMAP_COLUMNS`, :data:`EXP_FIBERMAP_COLUMNS`, :data:`SCORES_COLUMNS`.
    all_columns : bool
        Write every column of those data models (zeros or blanks where no values are given), as the real
        files have them; otherwise only the columns given.
    """
    unknown = [arm for arm in arms if arm not in DESI_ARMS]
    if unknown:
        raise ValueError(f"write_desi_coadd: arms must be among {DESI_ARMS}, got {unknown}")
    tables = (("FIBERMAP", FIBERMAP_COLUMNS, fibermap), ("EXP_FIBERMAP", EXP_FIBERMAP_COLUMNS, exp_fibermap))
    hdus = [primary_hdu(header), *_tables(tables, all_columns)]
    for arm in (a for a in DESI_ARMS if a in arms):
        name, data = arm.upper(), arms[arm]
        wavelength = np.asarray(data["wavelength"], np.float64)
        flux = np.asarray(data["flux"], np.float32)
        if flux.ndim != 2 or flux.shape[1] != wavelength.size:
            raise ValueError(f"write_desi_coadd: arm {arm}: flux must be (N, {wavelength.size}), got {flux.shape}")
        mask = data.get("mask")
        planes = {
            "WAVELENGTH": wavelength,
            "FLUX": flux,
            "IVAR": np.asarray(data["ivar"], np.float32),
            "MASK": np.zeros(flux.shape, np.int32) if mask is None else np.asarray(mask, np.int32),
        }
        if data.get("resolution") is not None:
            planes["RESOLUTION"] = np.ascontiguousarray(data["resolution"], dtype=np.float32)
        for plane, array in planes.items():
            if plane in ("IVAR", "MASK") and array.shape != flux.shape:
                raise ValueError(
                    f"write_desi_coadd: arm {arm}: {plane.lower()} must be {flux.shape}, got {array.shape}"
                )
            unit = _ARM_UNITS.get(plane)
            hdus.append(image_hdu(f"{name}_{plane}", array, {"BUNIT": unit} if unit else None))
    hdus += _tables((("SCORES", SCORES_COLUMNS, scores),), all_columns)
    return write_hdus(path, hdus)


def write_redrock(
    path: str | Path,
    redshifts: Mapping[str, np.ndarray],
    *,
    header: Mapping | fits.Header | None = None,
    fibermap: Mapping[str, np.ndarray] | None = None,
    exp_fibermap: Mapping[str, np.ndarray] | None = None,
    tsnr2: Mapping[str, np.ndarray] | None = None,
    all_columns: bool = False,
) -> Path:
    """Write a redrock file: PRIMARY, REDSHIFTS, then FIBERMAP, EXP_FIBERMAP and TSNR2 where given.

    ``redshifts`` and the other tables map column names to values, one per target (names and formats of
    :data:`REDSHIFTS_COLUMNS`, :data:`FIBERMAP_COLUMNS`, :data:`EXP_FIBERMAP_COLUMNS`, :data:`TSNR2_COLUMNS`);
    ``header`` and ``all_columns`` as in :func:`write_desi_coadd`.
    """
    tables = (
        ("REDSHIFTS", REDSHIFTS_COLUMNS, redshifts),
        ("FIBERMAP", FIBERMAP_COLUMNS, fibermap),
        ("EXP_FIBERMAP", EXP_FIBERMAP_COLUMNS, exp_fibermap),
        ("TSNR2", TSNR2_COLUMNS, tsnr2),
    )
    return write_hdus(path, [primary_hdu(header), *_tables(tables, all_columns)])
