"""FITS helpers shared by the survey formats of :mod:`galspec_hf.io`.

Reading: every failure is a :class:`~galspec_hf.errors.GalSpecFormatError` that names the file, the HDU
or column, and what was expected. Writing: binary tables from a format's data model (column names and
FITS formats as in the real files), image HDUs with header cards, and primary headers copied from the
caller's cards.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from ..errors import GalSpecFormatError

ARCSEC_PER_DEG = 3600.0

#: numpy dtype of each FITS binary-table format code (FITS standard 4.0, table 18).
_FITS_DTYPES = {
    "K": np.int64,
    "J": np.int32,
    "I": np.int16,
    "B": np.uint8,
    "L": bool,
    "D": np.float64,
    "E": np.float32,
}
#: Keywords astropy writes itself in a primary header; a caller's copies are not carried over.
_STRUCTURAL = ("SIMPLE", "BITPIX", "EXTEND", "")


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------
def _open_fits(path: str | Path) -> fits.HDUList:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except Exception as error:  # astropy raises OSError, ValueError, TypeError... for broken files
        raise GalSpecFormatError(f"{path}: not a readable FITS file ({type(error).__name__}: {error})") from error
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message).lower()]
    if truncated:
        hdul.close()
        raise GalSpecFormatError(f"{path}: truncated FITS file ({truncated[0]})")
    for w in caught:  # re-emit anything else
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return hdul


def _hdu(hdul: fits.HDUList, path: Path, name: str, purpose: str) -> fits.hdu.base.ExtensionHDU:
    if name not in hdul:
        present = ", ".join(h.name for h in hdul)
        raise GalSpecFormatError(f"{path}: missing HDU {name} (expected {purpose}); HDUs present: {present}")
    return hdul[name]


def _data(hdul: fits.HDUList, path: Path, name: str, purpose: str, kind: str):
    """The data of HDU ``name`` (``kind``: "data" or "table", for the message when it cannot be read)."""
    hdu = _hdu(hdul, path, name, purpose)
    try:
        return hdu.data
    except Exception as error:
        raise GalSpecFormatError(
            f"{path}: HDU {name}: {kind} unreadable, file truncated or corrupt ({error})"
        ) from error


def _image(hdul: fits.HDUList, path: Path, name: str, ndim: int, purpose: str, dtype=np.float32) -> np.ndarray:
    data = _data(hdul, path, name, purpose, "data")
    if data is None or np.ndim(data) != ndim:
        shape = None if data is None else np.shape(data)
        raise GalSpecFormatError(f"{path}: HDU {name}: expected a {ndim}-D array ({purpose}), got shape {shape}")
    return np.asarray(data).astype(dtype)  # FITS is big-endian: convert to native


def _images(hdul: fits.HDUList, path: Path, specs) -> list[np.ndarray]:
    """:func:`_image` for each (name, ndim, purpose[, dtype]) of ``specs``, in order."""
    return [_image(hdul, path, *spec) for spec in specs]


def _same_shape(path: Path, arrays: Mapping[str, np.ndarray], shape: tuple, like: str) -> None:
    """Refuse an HDU of ``arrays`` (name -> array) whose shape is not ``shape`` (that of the HDU ``like``)."""
    for name, array in arrays.items():
        if array.shape != tuple(shape):
            raise GalSpecFormatError(
                f"{path}: HDU {name}: expected shape {tuple(shape)} like {like}, got {array.shape}"
            )


def _table(hdul: fits.HDUList, path: Path, name: str, columns: tuple[str, ...], purpose: str) -> fits.FITS_rec:
    data = _data(hdul, path, name, purpose, "table")
    if data is None or not hasattr(data, "columns"):
        raise GalSpecFormatError(f"{path}: HDU {name}: expected a binary table ({purpose})")
    names = {n.upper() for n in data.columns.names}
    for column in columns:
        if column.upper() not in names:
            raise GalSpecFormatError(f"{path}: HDU {name}: missing column {column} (expected {purpose})")
    return data


def _strings(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype(str)


def _channel_names(header: fits.Header, n_channels: int, path: Path, hdu_name: str) -> tuple[str, ...]:
    """Names of the channels of a MaNGA DAP HDU from its C01..Cnn (or C1..Cn) header keywords."""
    names = []
    for i in range(1, n_channels + 1):
        for key in (f"C{i:02d}", f"C{i}"):
            if key in header:
                names.append(str(header[key]).strip())
                break
        else:
            raise GalSpecFormatError(f"{path}: HDU {hdu_name}: missing header keyword C{i:02d} (name of channel {i})")
    return tuple(names)


def _celestial_wcs(header: fits.Header, path: Path, hdu_name: str) -> WCS:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
    except Exception as error:
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: invalid WCS ({error})") from error
    if not wcs.has_celestial:
        raise GalSpecFormatError(f"{path}: HDU {hdu_name}: expected a celestial WCS (RA---TAN, DEC--TAN)")
    return wcs.celestial


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def table_hdu(
    extname: str,
    columns: Sequence[tuple[str, str]],
    values: Mapping[str, object],
    *,
    all_columns: bool = False,
) -> fits.BinTableHDU:
    """A binary table HDU named ``extname`` in a format's data model.

    Parameters
    ----------
    columns : sequence of (name, FITS format)
        The data model: every column the format knows, in the real file's order (e.g. ``("TARGETID", "K")``).
    values : mapping
        Column name -> values, one per row (``(n_rows, repeat)`` for a vector column); every name must be in
        ``columns``.
    all_columns : bool
        Write every column of ``columns``, zeros (or blank strings) where ``values`` has none; otherwise only
        the columns of ``values``, in the data model's order.
    """
    known = {name for name, _ in columns}
    unknown = [name for name in values if name not in known]
    if unknown:
        raise ValueError(f"{extname}: column(s) {unknown} not in the data model ({sorted(known)})")
    n_rows = len(next(iter(values.values()))) if values else 0
    cols = []
    for name, fmt in columns:
        if name not in values and not all_columns:
            continue
        code = fmt.lstrip("0123456789")
        repeat = int(fmt[: len(fmt) - len(code)] or 1)
        if name in values:
            array = np.asarray(values[name])
        elif code == "A":
            array = np.array([""] * n_rows)
        else:
            array = np.zeros((n_rows,) if repeat == 1 else (n_rows, repeat), dtype=_FITS_DTYPES[code])
        if code != "A":
            array = array.astype(_FITS_DTYPES[code])
        cols.append(fits.Column(name=name, format=fmt, array=array))
    hdu = fits.BinTableHDU.from_columns(cols)
    hdu.header["EXTNAME"] = extname
    return hdu


def set_cards(header: fits.Header, cards: Mapping | fits.Header | None) -> fits.Header:
    """Set each keyword of ``cards`` (keyword -> value or (value, comment), or a Header) in ``header``, in order.

    Structural keywords (SIMPLE, BITPIX, NAXIS*, EXTEND) and blank cards are skipped; COMMENT and HISTORY
    cards are appended.
    """
    if cards is None:
        return header
    items = (
        [(c.keyword, (c.value, c.comment)) for c in cards.cards] if isinstance(cards, fits.Header) else cards.items()
    )
    for key, value in items:
        if key in _STRUCTURAL or key.startswith("NAXIS"):
            continue
        if key in ("COMMENT", "HISTORY"):
            header.append((key, value[0] if isinstance(value, tuple) else value), end=True)
        else:
            header[key] = value
    return header


def image_hdu(name: str, data, cards: Mapping | fits.Header | None = None) -> fits.ImageHDU:
    """An image HDU named ``name`` holding ``data`` as given, with the header ``cards`` (see :func:`set_cards`)."""
    hdu = fits.ImageHDU(np.asarray(data), name=name)
    set_cards(hdu.header, cards)
    return hdu


def primary_hdu(cards: Mapping | fits.Header | None = None, data=None) -> fits.PrimaryHDU:
    """A primary HDU with the header ``cards`` (see :func:`set_cards`) after astropy's mandatory keywords."""
    hdu = fits.PrimaryHDU(data)
    set_cards(hdu.header, cards)
    return hdu


def write_hdus(path: str | Path, hdus: Sequence) -> Path:
    """Write ``hdus`` (primary first) to ``path``, replacing it; gzipped when ``path`` ends in .gz."""
    fits.HDUList(list(hdus)).writeto(path, overwrite=True)
    return Path(path)
