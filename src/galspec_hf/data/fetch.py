"""Download manifests for DESI DR1 spectra and Legacy Surveys cutouts, and a resumable downloader.

Used by ``data_scripts/fetch_desi_dr1.py`` and ``data_scripts/fetch_legacy_cutouts.py``.
A target list is a CSV or FITS table; column names are case-insensitive:

- DESI files: SURVEY, PROGRAM, HEALPIX (nested, nside 64), optionally TARGETID. One coadd and
  one redrock file per (survey, program, healpix), at
  ``{DESI_DR1_HEALPIX_URL}/{survey}/{program}/{healpix // 100}/{healpix}/coadd-{survey}-{program}-{healpix}.fits``.
- Legacy cutouts: RA, DEC (degrees), optionally TARGETID (then the file is ``cutout-{TARGETID}.fits``,
  which the DESI builder matches by name; otherwise it is matched by sky position).

:func:`download_file` resumes a partial ``*.part`` file with an HTTP Range request and checks the
final size against the server's length (and an expected size when the manifest has one).
Only the standard library is used.
"""

from __future__ import annotations

import csv
import http.client
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from .. import constants as C
from ..errors import DownloadError, GalSpecFormatError

__all__ = [
    "DownloadError",
    "ManifestEntry",
    "read_target_list",
    "desi_dr1_manifest",
    "legacy_cutout_manifest",
    "download_file",
    "download_manifest",
    "format_manifest",
]

_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class ManifestEntry:
    """One file to fetch: its URL, its path relative to the output folder, and its size when known."""

    url: str
    path: str
    kind: str
    expected_size: int | None = None


def read_target_list(path: str | Path) -> Table:
    """Read a target list (CSV, or FITS with the table in the first extension); column names upper-cased."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such target list")
    name = path.name.lower()
    try:
        if name.endswith((".fits", ".fits.gz", ".fit")):
            table = Table.read(path, hdu=1)
        else:
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            if not rows:
                raise GalSpecFormatError(f"{path}: empty target list (expected a header line and one row per target)")
            table = Table(rows=[list(r.values()) for r in rows], names=list(rows[0].keys()))
    except GalSpecFormatError:
        raise
    except Exception as error:
        raise GalSpecFormatError(f"{path}: not a readable CSV or FITS table ({error})") from error
    table.rename_columns(table.colnames, [c.strip().upper() for c in table.colnames])
    return table


def _column(table: Table, name: str, source: str, purpose: str) -> np.ndarray:
    """Column ``name`` of ``table``, matched case-insensitively."""
    by_upper = {c.upper(): c for c in table.colnames}
    if name.upper() not in by_upper:
        raise GalSpecFormatError(
            f"{source}: missing column {name} (expected {purpose}); columns present: {', '.join(table.colnames)}"
        )
    return np.asarray(table[by_upper[name.upper()]])


def desi_dr1_manifest(targets: Table, *, source: str = "target list", base_url: str = C.DESI_DR1_HEALPIX_URL):
    """Coadd and redrock files holding the targets, one pair per (SURVEY, PROGRAM, HEALPIX), sorted.

    Local paths mirror the archive: ``{survey}/{program}/{healpix//100}/{healpix}/coadd-....fits``.
    """
    surveys = _column(targets, "SURVEY", source, "the DESI survey, e.g. main")
    programs = _column(targets, "PROGRAM", source, "the DESI program, e.g. dark")
    purpose = (
        "the nested nside-64 HEALPix pixel of each target (e.g. healpy.ang2pix(64, ra, dec, nest=True, lonlat=True))"
    )
    healpixels = _column(targets, "HEALPIX", source, purpose)
    groups = set()
    for survey, program, healpix in zip(surveys, programs, healpixels, strict=True):
        try:
            pixel = int(healpix)
        except ValueError as error:
            raise GalSpecFormatError(f"{source}: column HEALPIX: expected an integer, got {healpix!r}") from error
        if pixel < 0 or pixel >= 12 * C.DESI_HEALPIX_NSIDE**2:
            raise GalSpecFormatError(
                f"{source}: column HEALPIX: {pixel} outside 0..{12 * C.DESI_HEALPIX_NSIDE**2 - 1}"
            )
        groups.add((str(survey).strip(), str(program).strip(), pixel))
    entries = []
    for survey, program, pixel in sorted(groups):
        folder = f"{survey}/{program}/{pixel // 100}/{pixel}"
        for kind in ("coadd", "redrock"):
            name = f"{kind}-{survey}-{program}-{pixel}.fits"
            entries.append(ManifestEntry(f"{base_url}/{folder}/{name}", f"{folder}/{name}", kind))
    return entries


def legacy_cutout_manifest(
    targets: Table,
    *,
    source: str = "target list",
    size: int = 64,
    pixel_scale_arcsec: float = C.LEGACY_PIXEL_SCALE_ARCSEC,
    layer: str = C.LEGACY_CUTOUT_LAYER,
    bands: str = "".join(C.LEGACY_BANDS),
    base_url: str = C.LEGACY_CUTOUT_URL,
):
    """One ``fits-cutout`` request per target, centred on RA, DEC; file ``cutouts/cutout-{TARGETID}.fits``."""
    ra = _column(targets, "RA", source, "right ascension in degrees").astype(float)
    dec = _column(targets, "DEC", source, "declination in degrees").astype(float)
    has_targetid = "TARGETID" in {c.upper() for c in targets.colnames}
    targetid = _column(targets, "TARGETID", source, "target IDs") if has_targetid else None
    if np.any(~np.isfinite(ra)) or np.any(~np.isfinite(dec)) or np.any(np.abs(dec) > 90):
        raise GalSpecFormatError(f"{source}: columns RA/DEC: expected finite degrees with |DEC| <= 90")
    entries = []
    for i in range(len(ra)):
        query = urllib.parse.urlencode(
            {
                "ra": f"{ra[i]:.6f}",
                "dec": f"{dec[i]:.6f}",
                "layer": layer,
                "pixscale": f"{pixel_scale_arcsec:g}",
                "bands": bands,
                "size": int(size),
            }
        )
        name = (
            f"cutout-{int(targetid[i])}.fits"
            if targetid is not None
            else f"legacysurvey-{ra[i]:.5f}{dec[i]:+.5f}.fits"
        )
        entries.append(ManifestEntry(f"{base_url}?{query}", f"cutouts/{name}", "cutout"))
    return entries


def format_manifest(entries) -> str:
    """Tab-separated ``kind  url  path`` lines, one per file."""
    return "\n".join(f"{e.kind}\t{e.url}\t{e.path}" for e in entries)


def download_file(
    url: str, destination: str | Path, *, expected_size: int | None = None, timeout: float = 60.0
) -> tuple[Path, bool]:
    """Download ``url`` to ``destination``, resuming ``destination + '.part'`` if present.

    A partial file is continued with ``Range: bytes=N-``; a server that answers 200 instead of
    206 is followed from the start. The final size must equal the server's total length
    (Content-Range or Content-Length) and ``expected_size`` when given; otherwise
    :class:`DownloadError` is raised and the partial file is kept.

    Returns
    -------
    (Path, bool)
        The destination and whether anything was downloaded (False: already complete).
    """
    destination = Path(destination)
    if destination.is_file() and (expected_size is None or destination.stat().st_size == expected_size):
        return destination, False
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "galspec-hf"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            if status == 206:
                content_range = response.headers.get("Content-Range", "")
                total = (
                    int(content_range.rsplit("/", 1)[1]) if "/" in content_range and "*" not in content_range else None
                )
                mode = "ab"
            else:  # full body: the server ignored or did not get a Range request
                offset, mode = 0, "wb"
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None else None
            with open(partial, mode) as handle:
                while chunk := response.read(_CHUNK_BYTES):
                    handle.write(chunk)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset and expected_size == offset:  # nothing left to fetch
            total = offset
        else:
            raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        raise DownloadError(f"{url}: {error}; partial file kept at {partial}") from error

    size = partial.stat().st_size
    for label, wanted in (("server length", total), ("manifest size", expected_size)):
        if wanted is not None and size != wanted:
            raise DownloadError(f"{url}: got {size} bytes, {label} is {wanted}; partial file kept at {partial}")
    os.replace(partial, destination)
    return destination, True


def download_manifest(entries, output_dir: str | Path, *, retries: int = 3, timeout: float = 60.0) -> dict:
    """Fetch every entry into ``output_dir`` (resuming and verifying); failures are collected, not raised.

    Returns
    -------
    dict
        ``downloaded``, ``already_present`` (counts) and ``failed`` (list of {url, path, error}).
    """
    output_dir = Path(output_dir)
    summary = {"downloaded": 0, "already_present": 0, "failed": []}
    for entry in entries:
        error = None
        for _ in range(max(1, retries)):
            try:
                _, fetched = download_file(
                    entry.url, output_dir / entry.path, expected_size=entry.expected_size, timeout=timeout
                )
                summary["downloaded" if fetched else "already_present"] += 1
                error = None
                break
            except DownloadError as caught:
                error = caught
        if error is not None:
            summary["failed"].append({"url": entry.url, "path": entry.path, "error": str(error)})
    return summary


def run_manifest(entries, output_dir: str | Path, *, dry_run: bool, retries: int = 3) -> int:
    """What the fetch scripts do with a manifest: print it (dry run) or download it and print the summary.

    Returns the exit code: 0, or 1 when a download failed.
    """
    import json

    if dry_run:
        print(format_manifest(entries))
        return 0
    summary = download_manifest(entries, output_dir, retries=retries)
    print(json.dumps(summary, indent=2))
    return 1 if summary["failed"] else 0


def add_manifest_arguments(parser) -> None:
    """The fetch scripts' shared options: --out, --dry-run, --retries (argparse ``parser``)."""
    parser.add_argument("--out", default="desi_dr1", help="output folder (default: desi_dr1)")
    parser.add_argument("--dry-run", action="store_true", help="print the manifest and download nothing")
    parser.add_argument("--retries", type=int, default=3, help="attempts per file (default 3)")


def fetch_main(prog: str, make_entries, args) -> int:
    """A fetch script's work: build the manifest with ``make_entries()``, then :func:`run_manifest` with the options
    of :func:`add_manifest_arguments`. A missing or malformed target list prints ``{prog}: error: ...`` on stderr
    and returns 2."""
    import sys

    try:
        entries = make_entries()
    except (FileNotFoundError, GalSpecFormatError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return run_manifest(entries, args.out, dry_run=args.dry_run, retries=args.retries)
