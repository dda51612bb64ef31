"""Derive the stellar-continuum templates shipped in src/galspec_hf/templates/mileshc_templates.npz.

Source: the MILES-HC library of the MaNGA DAP (Westfall et al. 2019, AJ 158, 231, Sec. 5): 42 spectra, each the
mean of a hierarchical cluster of MILES stars (Sanchez-Blazquez et al. 2006, MNRAS 371, 703; Falcon-Barroso et al.
2011, A&A 532, A95: 3525-7500 A in air, 0.9 A sampling, 2.50 A FWHM). The files come with sdss-mangadap
(mangadap/data/spectral_templates/miles_cluster/*.fits, BSD-3-Clause; the MILES spectra are freely distributed by
their authors for scientific use). This script converts air to vacuum wavelengths (Morton 1991 via
galspec_hf.simulate.spectra.air_to_vacuum), resamples every template onto one logarithmic rest-frame grid
(35 km/s pixels, 3575-7400 A vacuum; flux-conserving linear interpolation of a 0.9 A-sampled spectrum onto
<=0.9 A pixels), normalises each to unit median and stores float32 arrays (about 1 MB).

Usage: python data_scripts/make_continuum_templates.py [--out src/galspec_hf/templates/mileshc_templates.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.analysis.continuum import continuum_template_grid_rest_a
from galspec_hf.simulate.spectra import air_to_vacuum


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="src/galspec_hf/templates/mileshc_templates.npz")
    args = parser.parse_args(argv)
    import mangadap  # noqa: PLC0415  (data script only: the library never imports mangadap)

    folder = Path(mangadap.__file__).parent / "data" / "spectral_templates" / "miles_cluster"
    files = sorted(folder.glob("MILES_cluster_group_*.fits"))
    if not files:
        raise ValueError(f"no MILES_cluster_group_*.fits in {folder}")
    wave = continuum_template_grid_rest_a()
    fluxes = []
    for path in files:
        with fits.open(path) as hdul:
            hdr, data = hdul[0].header, np.asarray(hdul[0].data, float)
            if abs(hdr["FWHM"] - C.CONTINUUM_TEMPLATE_FWHM_A) > 1e-6:
                raise ValueError(f"{path}: FWHM {hdr['FWHM']} A, expected {C.CONTINUUM_TEMPLATE_FWHM_A}")
            air = hdr["CRVAL1"] + hdr["CDELT1"] * (np.arange(data.size) + 1 - hdr["CRPIX1"])
        vac = air_to_vacuum(air)
        flux = np.interp(wave, vac, data)
        fluxes.append(flux / np.median(flux))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, wavelength_rest_a=wave.astype(np.float64), flux=np.asarray(fluxes, np.float32),
        fwhm_a=np.float64(C.CONTINUUM_TEMPLATE_FWHM_A), names=np.array([p.stem for p in files]),
    )  # fmt: skip
    print(f"wrote {out}: {len(files)} templates x {wave.size} pixels, {out.stat().st_size / 1e6:.2f} MB")
    return out


if __name__ == "__main__":
    main()
