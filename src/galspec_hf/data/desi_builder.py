"""`DesiGalaxies`: a `datasets.GeneratorBasedBuilder` pairing DESI spectra with Legacy Surveys cutouts.

datasets 5 runs no loading scripts, so the builder is a class that is instantiated directly::

    from galspec_hf.data import DesiGalaxies
    builder = DesiGalaxies(data_dir="my_desi_folder", cache_dir="cache")   # cuts as keyword arguments
    builder.download_and_prepare(num_proc=4)
    dataset = builder.as_dataset(split="train")
    stream = builder.as_streaming_dataset(split="train")                 # reads the FITS files lazily
    builder.download_and_prepare("out_parquet", file_format="parquet")   # Parquet shards

Input folder (searched recursively)
    ``coadd-*.fits`` DESI coadds, each with ``redrock-*.fits`` of the same suffix (same folder first, then
    anywhere); every other ``*.fits``/``*.fits.gz`` file (except ``manga-*`` products) is a Legacy Surveys
    cutout, matched to a target
    by the name ``cutout-{TARGETID}.fits`` or else by sky position (cutout centre through its WCS
    within ``match_radius_arcsec`` of TARGET_RA/DEC).

Quality cuts (config fields, defaults as in the issue): SPECTYPE in ``spectypes`` (GALAXY), ZWARN == 0,
DELTACHI2 > ``min_deltachi2`` (25), COADD_FIBERSTATUS == 0, ``z_min`` < Z < ``z_max`` (0, 1).

Bad input never stops a build: an unreadable file, a missing HDU, a coadd whose TARGETIDs are not in
its redrock file, a spectrum with non-finite flux or negative ivar, a cutout of the wrong shape or
without the bands: each is skipped, counted and written with its reason to the build report
(:func:`read_build_report`).

The cache is keyed by a fingerprint of every input file (relative path, size, mtime), so changing,
adding or removing a file gives a new cache directory and a fresh build.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from datasets.builder import Key

from .. import constants as C
from ..errors import GalSpecFormatError
from ..io.desi import fiber_spectrum, read_desi_coadd, read_redrock
from ..io.legacy import LegacyCutout, read_legacy_cutout

__all__ = ["DesiGalaxies", "DesiGalaxiesConfig", "fingerprint_inputs", "read_build_report", "REPORT_DIRNAME"]

#: Folder, inside the prepared dataset directory, holding the skip records of a build (JSON lines).
REPORT_DIRNAME = "galspec_report"

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fits.fz", ".fit")
_CUTOUT_NAME = re.compile(r"^cutout-(?P<targetid>\d+)\.fits(?:\.gz|\.fz)?$")


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(_FITS_SUFFIXES)


def fingerprint_inputs(data_dir: str | Path) -> str:
    """Hash of (relative path, size, mtime in ns) of every FITS file under ``data_dir``.

    It changes when any input file is changed, added or removed, and is part of the cache key.
    """
    data_dir = Path(data_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file() and _is_fits(p)):
        stat = path.stat()
        digest.update(f"{path.relative_to(data_dir).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass
class DesiGalaxiesConfig(datasets.BuilderConfig):
    """Configuration of :class:`DesiGalaxies`: image size, bands and the quality cuts.

    Attributes
    ----------
    image_size : int
        Side of the stored image in pixels; larger cutouts are centre-cropped (WCS sliced to match),
        smaller ones are skipped.
    bands : tuple of str
        Image bands, in channel order.
    spectypes : tuple of str
        Redrock SPECTYPE values kept.
    require_zwarn_zero, require_fiberstatus_zero : bool
        Keep only ZWARN == 0 / COADD_FIBERSTATUS == 0.
    min_deltachi2 : float
        Keep DELTACHI2 > this.
    z_min, z_max : float
        Keep z_min < Z < z_max.
    match_radius_arcsec : float
        Largest distance between a target and a cutout centre for a match by position.
    input_fingerprint : str
        Set by the builder from the input files (cache key); not for users.
    """

    image_size: int = 64
    bands: tuple[str, ...] = C.LEGACY_BANDS
    spectypes: tuple[str, ...] = ("GALAXY",)
    require_zwarn_zero: bool = True
    min_deltachi2: float = 25.0
    require_fiberstatus_zero: bool = True
    z_min: float = 0.0
    z_max: float = 1.0
    match_radius_arcsec: float = 1.0
    input_fingerprint: str = ""


class _SpectrumFeatures(datasets.Features):
    """`datasets.Features` that hand the (7781,) spectrum arrays to the Arrow writer as numpy arrays.

    The generic ``encode_example`` turns each numpy array into a Python list first (about 1 ms per
    array, most of the preparation time); the Arrow writer converts numpy arrays directly. The
    arrays are checked for dtype and length here; every other column is encoded as usual.
    """

    SPECTRUM_COLUMNS = {"flux": np.float32, "ivar": np.float32, "mask": np.bool_}

    def encode_example(self, example: dict) -> dict:
        encoded = super().encode_example({k: v for k, v in example.items() if k not in self.SPECTRUM_COLUMNS})
        for name, dtype in self.SPECTRUM_COLUMNS.items():
            array = np.asarray(example[name], dtype=dtype)
            if array.shape != (self[name].length,):
                raise ValueError(f"column {name}: expected shape ({self[name].length},), got {array.shape}")
            encoded[name] = array
        return encoded


@dataclass(frozen=True)
class _CutoutIndex:
    """Cutouts found in the input folder: by TARGETID (file name) and by centre position."""

    by_targetid: tuple[tuple[int, str], ...]
    positional_paths: tuple[str, ...]
    positional_ra: tuple[float, ...]
    positional_dec: tuple[float, ...]


class DesiGalaxies(datasets.GeneratorBasedBuilder):
    """DESI spectra paired with Legacy Surveys cutouts, one row per galaxy (see the module docstring).

    Features (units as in docs/ARCHITECTURE.md)
    --------------------------------
    targetid (int64), object_id (string, MultimodalUniverse's name: str(TARGETID)),
    image (Array3D float32, (n_bands, image_size, image_size), nanomaggies),
    flux, ivar (float32, 7781: 1e-17 erg/s/cm2/A on 3600-9824 A at 0.8 A, vacuum): the flux that entered
    the fiber, i.e. the file's point-source-calibrated flux x psf_to_fiber, and ivar / psf_to_fiber^2,
    psf_to_fiber (float32: FIBERMAP MEAN_PSF_TO_FIBER_SPECFLUX; a spectrum without a finite factor > 0
    is skipped as bad_record),
    mask (bool, 7781: True = do not use, i.e. DESI mask bits set or ivar == 0),
    redshift, redshift_err (float32, redrock Z, ZERR), zwarn (int64, DESI convention, 0 = good),
    deltachi2 (float32), spectype (string), ra, dec (float64, TARGET_RA/DEC, degrees),
    fiber_offset (float32, 2: fiber position MEAN_FIBER_RA/DEC minus cutout centre, arcsec east/north,
    through the cutout WCS), fiber_diameter (float32, arcsec), pixel_scale (float32, arcsec/pixel),
    survey, program (string), healpix (int64), coadd_fiberstatus (int64),
    ebv, flux_g, flux_r, flux_z (float32, FIBERMAP; NaN when absent), coadd_file (string, file name).
    """

    BUILDER_CONFIG_CLASS = DesiGalaxiesConfig
    # 2.0.0: flux and ivar as fiber flux (x MEAN_PSF_TO_FIBER_SPECFLUX), new psf_to_fiber column
    VERSION = datasets.Version("2.0.0")
    BUILDER_CONFIGS = [DesiGalaxiesConfig(name="default", version=VERSION)]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *args, data_dir: str | os.PathLike | None = None, **kwargs):
        if data_dir is None:
            raise ValueError("DesiGalaxies: data_dir is required (a folder of DESI coadd/redrock files and cutouts)")
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise FileNotFoundError(f"DesiGalaxies: data_dir {data_dir} is not a folder")
        kwargs.setdefault("dataset_name", "desi_galaxies")
        kwargs["input_fingerprint"] = fingerprint_inputs(data_dir)
        for key in ("bands", "spectypes"):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = tuple(kwargs[key])
        super().__init__(*args, data_dir=str(data_dir.resolve()), **kwargs)

    # --------------------------------------------------------------------------------------
    def _info(self) -> datasets.DatasetInfo:
        n_pix = C.DESI_NUM_PIXELS
        size, n_bands = self.config.image_size, len(self.config.bands)
        features = _SpectrumFeatures(
            {
                "targetid": datasets.Value("int64"),
                "object_id": datasets.Value("string"),
                "image": datasets.Array3D(shape=(n_bands, size, size), dtype="float32"),
                "flux": datasets.List(datasets.Value("float32"), length=n_pix),
                "ivar": datasets.List(datasets.Value("float32"), length=n_pix),
                "mask": datasets.List(datasets.Value("bool"), length=n_pix),
                "psf_to_fiber": datasets.Value("float32"),
                "redshift": datasets.Value("float32"),
                "redshift_err": datasets.Value("float32"),
                "zwarn": datasets.Value("int64"),
                "deltachi2": datasets.Value("float32"),
                "spectype": datasets.Value("string"),
                "ra": datasets.Value("float64"),
                "dec": datasets.Value("float64"),
                "fiber_offset": datasets.List(datasets.Value("float32"), length=2),
                "fiber_diameter": datasets.Value("float32"),
                "pixel_scale": datasets.Value("float32"),
                "survey": datasets.Value("string"),
                "program": datasets.Value("string"),
                "healpix": datasets.Value("int64"),
                "coadd_fiberstatus": datasets.Value("int64"),
                "ebv": datasets.Value("float32"),
                "flux_g": datasets.Value("float32"),
                "flux_r": datasets.Value("float32"),
                "flux_z": datasets.Value("float32"),
                "coadd_file": datasets.Value("string"),
            }
        )
        return datasets.DatasetInfo(
            description="DESI spectra merged onto 3600-9824 A (0.8 A) paired with Legacy Surveys cutouts.",
            features=features,
            homepage="https://data.desi.lbl.gov/doc/releases/dr1/",
            license="DESI data: CC BY 4.0; Legacy Surveys: CC BY 4.0",
        )

    # --------------------------------------------------------------------------------------
    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_splits_kwargs):
        # Record skips only while preparing (not while streaming): workers inherit this attribute.
        self._galspec_report_dir = str(Path(self._output_dir) / REPORT_DIRNAME)
        Path(self._galspec_report_dir).mkdir(parents=True, exist_ok=True)
        try:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_splits_kwargs)
        finally:
            self._galspec_report_dir = None

    def _report(self, records: list[dict]) -> None:
        """Append report records (skips and per-file counts) to a JSON-lines file of this process."""
        report_dir = getattr(self, "_galspec_report_dir", None)
        if not report_dir or not records:
            return
        with open(Path(report_dir) / f"part-{uuid.uuid4().hex}.jsonl", "w") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")

    def _split_generators(self, dl_manager):
        data_dir = Path(self.config.data_dir)
        fits_files = sorted(p for p in data_dir.rglob("*") if p.is_file() and _is_fits(p))
        coadds = [p for p in fits_files if p.name.startswith("coadd-")]
        redrocks = {}
        for p in fits_files:
            if p.name.startswith("redrock-"):
                redrocks.setdefault(p.name, []).append(p)
        # MaNGA products (manga-*-LOGCUBE / -MAPS, DAP MAPS) may sit in the same tree: they are not cutouts
        cutout_files = [p for p in fits_files if not p.name.startswith(("coadd-", "redrock-", "manga-", "MaNGA_"))]

        redrock_for = []
        for coadd in coadds:
            name = "redrock-" + coadd.name[len("coadd-") :]
            candidates = redrocks.get(name, [])
            same_dir = [p for p in candidates if p.parent == coadd.parent]
            chosen = (same_dir or candidates or [None])[0]
            redrock_for.append(str(chosen) if chosen is not None else "")

        index, problems = self._index_cutouts(cutout_files)
        self._report(problems)
        return [
            datasets.SplitGenerator(
                name=datasets.Split.TRAIN,
                gen_kwargs={"coadd_files": [str(p) for p in coadds], "redrock_files": redrock_for, "cutouts": index},
            )
        ]

    def _index_cutouts(self, paths: list[Path]) -> tuple[_CutoutIndex, list[dict]]:
        by_targetid, pos_paths, pos_ra, pos_dec, problems = [], [], [], [], []
        for path in paths:
            match = _CUTOUT_NAME.match(path.name)
            if match:
                by_targetid.append((int(match["targetid"]), str(path)))
                continue
            try:
                cutout_header = _read_cutout_centre(path)
            except GalSpecFormatError as error:
                problems.append({"kind": "bad_file", "file": str(path), "targetid": None, "reason": str(error)})
                continue
            pos_paths.append(str(path))
            pos_ra.append(cutout_header[0])
            pos_dec.append(cutout_header[1])
        index = _CutoutIndex(tuple(by_targetid), tuple(pos_paths), tuple(pos_ra), tuple(pos_dec))
        return index, problems

    # --------------------------------------------------------------------------------------
    def _quality_cut(self, z, zwarn, spectype, deltachi2, fiberstatus) -> str | None:
        """Reason the record fails the configured cuts, or None when it passes."""
        cfg = self.config
        if spectype not in cfg.spectypes:
            return f"cut: SPECTYPE {spectype!r} not in {list(cfg.spectypes)}"
        if cfg.require_zwarn_zero and zwarn != 0:
            return f"cut: ZWARN = {zwarn} (required 0)"
        if not deltachi2 > cfg.min_deltachi2:
            return f"cut: DELTACHI2 = {deltachi2:.3g} (required > {cfg.min_deltachi2})"
        if cfg.require_fiberstatus_zero and fiberstatus != 0:
            return f"cut: COADD_FIBERSTATUS = {fiberstatus} (required 0)"
        if not cfg.z_min < z < cfg.z_max:
            return f"cut: Z = {z:.4f} outside ({cfg.z_min}, {cfg.z_max})"
        return None

    def _load_cutout(self, path: str) -> LegacyCutout:
        cutout = read_legacy_cutout(path, bands=tuple(self.config.bands))
        size = self.config.image_size
        if cutout.shape != (size, size):
            cutout = cutout.crop_center(size)
        if not np.all(np.isfinite(cutout.image)):
            raise GalSpecFormatError(f"{path}: HDU PRIMARY: image has non-finite pixels, expected finite nanomaggies")
        return cutout

    def _generate_examples(self, coadd_files, redrock_files, cutouts: _CutoutIndex):
        """Yield (Key(file index, spectrum index), row) for every spectrum that passes the cuts and checks.

        One coadd file at a time (``num_proc`` jobs get disjoint slices of ``coadd_files``); every
        skipped file or record, and a count per file, go to the build report.
        """
        by_targetid = dict(cutouts.by_targetid)
        catalogue = None
        if cutouts.positional_paths:
            catalogue = SkyCoord(np.array(cutouts.positional_ra) * u.deg, np.array(cutouts.positional_dec) * u.deg)

        for file_index, (coadd_path, redrock_path) in enumerate(zip(coadd_files, redrock_files, strict=True)):
            records: list[dict] = []
            n_spectra = n_written = 0
            try:
                coadd, redrock = self._read_pair(coadd_path, redrock_path)
                n_spectra = len(coadd)
            except (GalSpecFormatError, OSError) as error:
                records.append(_skip("bad_file", coadd_path, None, str(error)))
            else:
                row_of = {int(t): r for r, t in enumerate(redrock.targetid)}
                cutout_paths = self._find_cutouts(coadd, by_targetid, catalogue, cutouts.positional_paths)
                for i, targetid in enumerate(int(t) for t in coadd.targetid):
                    if targetid not in row_of:
                        reason = f"TARGETID {targetid} of {coadd_path} FIBERMAP not in {redrock_path} REDSHIFTS"
                        records.append(_skip("bad_record", coadd_path, targetid, reason))
                        continue
                    problem = self._check_spectrum(coadd, i, redrock, row_of[targetid])
                    if problem is not None:
                        records.append(_skip(problem[0], coadd_path, targetid, problem[1]))
                        continue
                    if cutout_paths[i] is None:
                        radius = self.config.match_radius_arcsec
                        reason = f"no cutout-{targetid}.fits and no cutout centred within {radius} arcsec"
                        records.append(_skip("no_cutout", coadd_path, targetid, reason))
                        continue
                    try:
                        cutout = self._load_cutout(cutout_paths[i])
                    except (GalSpecFormatError, OSError) as error:
                        records.append(_skip("bad_cutout", cutout_paths[i], targetid, str(error)))
                        continue
                    n_written += 1
                    yield Key(file_index, i), self._make_row(coadd, i, redrock, row_of[targetid], cutout)
            records.append({"kind": "file", "file": coadd_path, "n_spectra": n_spectra, "n_written": n_written})
            self._report(records)

    @staticmethod
    def _read_pair(coadd_path: str, redrock_path: str):
        """Read a coadd and its redrock file; raise GalSpecFormatError when they cannot be used together."""
        if not redrock_path:
            raise GalSpecFormatError(f"{coadd_path}: no matching redrock-*.fits file in the input folder")
        coadd = read_desi_coadd(coadd_path, require_fibermap=True)
        redrock = read_redrock(redrock_path)
        if not set(coadd.targetid.tolist()) & set(redrock.targetid.tolist()):
            raise GalSpecFormatError(
                f"{coadd_path}: no TARGETID in common with {redrock_path} (FIBERMAP vs REDSHIFTS TARGETID)"
            )
        return coadd, redrock

    def _find_cutouts(self, coadd, by_targetid: dict, catalogue, positional_paths) -> list[str | None]:
        """Cutout path of each spectrum: by ``cutout-{TARGETID}`` name, else the nearest centre within the radius."""
        paths = [by_targetid.get(int(t)) for t in coadd.targetid]
        if catalogue is not None and np.all(np.isfinite(coadd.target_ra)):
            targets = SkyCoord(coadd.target_ra * u.deg, coadd.target_dec * u.deg)
            nearest, separation, _ = targets.match_to_catalog_sky(catalogue)
            close = separation.to_value(u.arcsec) <= self.config.match_radius_arcsec
            paths = [p if p is not None or not close[i] else positional_paths[nearest[i]] for i, p in enumerate(paths)]
        return paths

    def _check_spectrum(self, coadd, i: int, redrock, r: int) -> tuple[str, str] | None:
        """(kind, reason) when spectrum ``i`` (redrock row ``r``) fails a cut or is broken, else None."""
        cut = self._quality_cut(
            float(redrock.z[r]),
            int(redrock.zwarn[r]),
            str(redrock.spectype[r]),
            float(redrock.deltachi2[r]),
            int(coadd.coadd_fiberstatus[i]),
        )
        if cut is not None:
            return "cut", cut
        if coadd.n_nonfinite_flux[i] > 0:
            return "bad_record", f"{coadd.path}: {coadd.n_nonfinite_flux[i]} non-finite pixels in *_FLUX"
        if coadd.n_negative_ivar[i] > 0:
            return "bad_record", f"{coadd.path}: {coadd.n_negative_ivar[i]} negative pixels in *_IVAR"
        if not np.any(coadd.ivar[i] > 0):
            return "bad_record", f"{coadd.path}: no pixel with ivar > 0"
        try:
            fiber_spectrum(coadd, i)
        except GalSpecFormatError as error:
            return "bad_record", str(error)
        return None

    @staticmethod
    def _make_row(coadd, i: int, redrock, r: int, cutout: LegacyCutout) -> dict:
        """The data set row of spectrum ``i`` of ``coadd`` (redrock row ``r``) with its cutout."""
        fibermap = coadd.fibermap

        def fibermap_value(name: str) -> float:
            return float(fibermap[name][i]) if name in fibermap.colnames else float("nan")

        targetid = int(coadd.targetid[i])
        # DESI spectra are calibrated for point sources; flux x factor is the fiber flux (1.5" fiber, 1" seeing)
        flux, ivar, factor = fiber_spectrum(coadd, i)
        return {
            "targetid": targetid,
            "object_id": str(targetid),
            "image": cutout.image,
            "flux": flux,
            "ivar": ivar,
            "psf_to_fiber": factor,
            "mask": (coadd.mask[i] != 0) | (coadd.ivar[i] <= 0),
            "redshift": float(redrock.z[r]),
            "redshift_err": float(redrock.zerr[r]),
            "zwarn": int(redrock.zwarn[r]),
            "deltachi2": float(redrock.deltachi2[r]),
            "spectype": str(redrock.spectype[r]),
            "ra": float(coadd.target_ra[i]),
            "dec": float(coadd.target_dec[i]),
            # fiber position relative to the cutout centre, through the cutout's WCS
            "fiber_offset": cutout.sky_to_offset_arcsec(coadd.fiber_ra[i], coadd.fiber_dec[i]).astype(np.float32),
            "fiber_diameter": C.DESI_FIBER_DIAMETER_ARCSEC,
            "pixel_scale": cutout.pixel_scale_arcsec,
            "survey": coadd.survey,
            "program": coadd.program,
            "healpix": coadd.healpix,
            "coadd_fiberstatus": int(coadd.coadd_fiberstatus[i]),
            "ebv": fibermap_value("EBV"),
            "flux_g": fibermap_value("FLUX_G"),
            "flux_r": fibermap_value("FLUX_R"),
            "flux_z": fibermap_value("FLUX_Z"),
            "coadd_file": Path(coadd.path).name,
        }


def _skip(kind: str, file, targetid: int | None, reason: str) -> dict:
    """One skip record of the build report."""
    return {"kind": kind, "file": str(file), "targetid": targetid, "reason": reason}


def _read_cutout_centre(path: Path) -> tuple[float, float]:
    """(RA, Dec) in degrees of a cutout's central pixel, from its header WCS only (no pixel data read)."""
    from astropy.wcs import WCS

    try:
        header = fits.getheader(path, 0)
    except Exception as error:
        raise GalSpecFormatError(f"{path}: not a readable FITS file ({type(error).__name__}: {error})") from error
    width, height = header.get("NAXIS1"), header.get("NAXIS2")
    if not width or not height:
        raise GalSpecFormatError(f"{path}: HDU PRIMARY: expected an image (NAXIS1, NAXIS2 in the header)")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header, naxis=2)
        centre = wcs.pixel_to_world((width - 1) / 2.0, (height - 1) / 2.0)
        return float(centre.ra.deg), float(centre.dec.deg)
    except Exception as error:
        raise GalSpecFormatError(f"{path}: HDU PRIMARY: no usable celestial WCS ({error})") from error


def _general_reason(record: dict) -> str:
    """A reason without file names and numbers, to count skips of the same kind together."""
    reason = record["reason"].split(" = ")[0] if record["kind"] == "cut" else record["reason"]
    reason = re.sub(r"[^\s*]+\.fits(?:\.gz|\.fz)?:?", "<file>", reason)
    return re.sub(r"(?<![A-Za-z_\d])\d+(?:\.\d+)?", "N", reason)


def read_build_report(prepared_dir: str | Path) -> dict:
    """Aggregate the skip records written while preparing a :class:`DesiGalaxies` data set.

    Parameters
    ----------
    prepared_dir : str or Path
        The folder the builder prepared (``builder.cache_dir`` or the ``output_dir`` given to
        ``download_and_prepare``).

    Returns
    -------
    dict
        ``n_coadd_files`` (coadd files seen), ``n_spectra_read`` (spectra in the coadds that were
        read and paired with their redrock file), ``n_written`` (rows), ``n_skipped``,
        ``skipped_by_kind`` and ``skipped_by_reason`` (counts; reasons with numbers replaced by N)
        and ``skipped`` (every skipped file or record: kind, file, targetid, reason), sorted by file
        and targetid.
    """
    report_dir = Path(prepared_dir) / REPORT_DIRNAME
    files, skipped = [], []
    for part in sorted(report_dir.glob("part-*.jsonl")) if report_dir.is_dir() else []:
        for line in part.read_text().splitlines():
            record = json.loads(line)
            (files if record["kind"] == "file" else skipped).append(record)
    skipped.sort(key=lambda r: (r["file"], -1 if r["targetid"] is None else r["targetid"], r["reason"]))
    by_kind: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    for record in skipped:
        by_kind[record["kind"]] = by_kind.get(record["kind"], 0) + 1
        by_reason[_general_reason(record)] = by_reason.get(_general_reason(record), 0) + 1
    return {
        "n_coadd_files": len(files),
        "n_spectra_read": sum(r["n_spectra"] for r in files),
        "n_written": sum(r["n_written"] for r in files),
        "n_skipped": len(skipped),
        "skipped_by_kind": dict(sorted(by_kind.items())),
        "skipped_by_reason": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])),
        "skipped": skipped,
    }
