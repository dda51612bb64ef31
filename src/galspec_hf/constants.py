"""Physical constants, survey grids and instrument facts used across galspec-hf.

Everything with a number that comes from the outside world lives here, with its source.
Units are in the names: ``_A`` (vacuum Angstrom), ``_ARCSEC``, ``_KMS``.

Conventions (see DESIGN.md): flux density in 1e-17 erg/s/cm2/A, images in nanomaggies per
pixel, wavelengths in vacuum Angstrom in the observed frame unless a name says ``rest``, sky
offsets in arcsec east (+RA) and north (+Dec) of the image centre.
"""

from __future__ import annotations

import math

# ----------------------------------------------------------------------------------------
# Fundamental constants
# ----------------------------------------------------------------------------------------
#: Speed of light in km/s (CODATA 2018, exact by definition of the metre).
SPEED_OF_LIGHT_KMS = 299_792.458

#: Flux density unit of DESI spectra and of every spectrum in this package, erg/s/cm2/A.
FLUX_UNIT_ERG_S_CM2_A = 1e-17

#: Zero point of the nanomaggy: 1 nanomaggy is AB magnitude 22.5 (SDSS/Legacy Surveys convention,
#: https://www.legacysurvey.org/dr10/description/#photometry).
NANOMAGGY_AB_ZEROPOINT = 22.5

#: Gaussian FWHM / sigma = 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# ----------------------------------------------------------------------------------------
# DESI spectrograph (DESI Collaboration 2022, AJ 164, 207; coadd file data model
# https://desidatamodel.readthedocs.io/en/latest/DESI_SPECTRO_REDUX/SPECPROD/healpix/SURVEY/PROGRAM/PIXGROUP/PIXNUM/coadd-SURVEY-PROGRAM-PIXNUM.html)
# The arm grids below were read off the real coadd in ../shared/data/desi.
# ----------------------------------------------------------------------------------------
#: Merged DESI model grid: 3600-9824 A at 0.8 A, 7781 pixels (DESIGN.md).
DESI_WAVELENGTH_MIN_A = 3600.0
DESI_WAVELENGTH_MAX_A = 9824.0
DESI_WAVELENGTH_STEP_A = 0.8
DESI_NUM_PIXELS = 7781

#: The three DESI arms: (first pixel, last pixel) in Angstrom on the same 0.8 A lattice.
DESI_ARMS_A = {
    "b": (3600.0, 5800.0),  # 2751 pixels
    "r": (5760.0, 7620.0),  # 2326 pixels
    "z": (7520.0, 9824.0),  # 2881 pixels
}

#: DESI fiber diameter on the sky, arcsec (107 micron cores; DESI Collaboration 2022, Sec. 4).
DESI_FIBER_DIAMETER_ARCSEC = 1.5

#: Number of diagonals in the DESI resolution matrix stored in coadd files.
DESI_RESOLUTION_NDIAG = 11

# ----------------------------------------------------------------------------------------
# Other spectroscopic surveys (for fine-tuning and evaluation)
# ----------------------------------------------------------------------------------------
#: SDSS legacy spectrograph fiber diameter, arcsec (York et al. 2000, AJ 120, 1579).
SDSS_FIBER_DIAMETER_ARCSEC = 3.0
#: BOSS/eBOSS fiber diameter, arcsec (Smee et al. 2013, AJ 146, 32).
BOSS_FIBER_DIAMETER_ARCSEC = 2.0
#: SDSS log10-lambda step of coadded spectra (1e-4 dex, 69 km/s per pixel).
SDSS_LOGLAM_STEP = 1e-4
#: Nominal SDSS spectrograph coverage used for fine-tuning grids, Angstrom.
SDSS_WAVELENGTH_MIN_A = 3800.0
SDSS_WAVELENGTH_MAX_A = 9200.0

#: MaNGA IFU fiber diameter, arcsec (Drory et al. 2015, AJ 149, 77).
MANGA_FIBER_DIAMETER_ARCSEC = 2.0
#: MaNGA DRP cube spaxel size, arcsec (Law et al. 2016, AJ 152, 83).
MANGA_SPAXEL_ARCSEC = 0.5
#: Typical MaNGA reconstructed PSF FWHM in the cubes, arcsec (Law et al. 2016).
MANGA_PSF_FWHM_ARCSEC = 2.5
#: MaNGA LOGCUBE wavelength grid: log10(lambda/A) = 3.5589 + 1e-4 * i, i = 0..4562 (vacuum),
#: as read off ../shared/data/manga/MaNGA_test_spectra.fits.gz (3621.6-10353.8 A).
MANGA_LOGLAM0 = 3.5589
MANGA_LOGLAM_STEP = 1e-4
MANGA_NUM_PIXELS = 4563

# ----------------------------------------------------------------------------------------
# Imaging
# ----------------------------------------------------------------------------------------
#: Legacy Surveys DR9/DR10 pixel scale, arcsec/pixel (https://www.legacysurvey.org/dr9/description/).
LEGACY_PIXEL_SCALE_ARCSEC = 0.262
#: Legacy Surveys bands used by the model.
LEGACY_BANDS = ("g", "r", "z")
#: speclite filter names of the DECam bands used for Legacy Surveys DR9 south.
LEGACY_SPECLITE_FILTERS = {"g": "decam2014-g", "r": "decam2014-r", "z": "decam2014-z"}
#: HSC pixel scale, arcsec/pixel (Aihara et al. 2018, PASJ 70, S4).
HSC_PIXEL_SCALE_ARCSEC = 0.168
HSC_BANDS = ("g", "r", "i", "z", "y")

# ----------------------------------------------------------------------------------------
# Emission lines: vacuum rest wavelengths in Angstrom.
# Source: SDSS spectroscopic line list, vacuum wavelengths
# (http://classic.sdss.org/dr7/algorithms/linestable.html), which follows NIST.
# ----------------------------------------------------------------------------------------
EMISSION_LINES_VACUUM_A = {
    "OII_3727": 3727.092,
    "OII_3730": 3729.875,
    "Hdelta": 4102.892,
    "Hgamma": 4341.684,
    "Hbeta": 4862.683,
    "OIII_4960": 4960.295,
    "OIII_5008": 5008.240,
    "OI_6302": 6302.046,
    "NII_6550": 6549.86,
    "Halpha": 6564.61,
    "NII_6585": 6585.27,
    "SII_6718": 6718.29,
    "SII_6733": 6732.67,
}

#: Fixed doublet ratios from atomic physics (Storey & Zeippen 2000, MNRAS 312, 813):
#: [OIII] 5008/4960 = 2.98 and [NII] 6585/6550 = 3.05 (transition probabilities, emissivity ratio).
OIII_DOUBLET_RATIO = 2.98
NII_DOUBLET_RATIO = 3.05

#: Case B recombination H-alpha / H-beta at T = 1e4 K, n_e = 1e2 cm^-3 (Osterbrock & Ferland 2006, Table 4.4).
CASE_B_HALPHA_HBETA = 2.86

# ----------------------------------------------------------------------------------------
# Spectral indices
# ----------------------------------------------------------------------------------------
#: Dn4000 bands, rest-frame Angstrom (Balogh et al. 1999, ApJ 527, 54): blue, red.
DN4000_BLUE_A = (3850.0, 3950.0)
DN4000_RED_A = (4000.0, 4100.0)
