"""Physical constants, survey grids and instrument facts used across galspec-hf.

Everything with a number that comes from the outside world lives here, with its source.
Units are in the names: ``_A`` (vacuum Angstrom), ``_ARCSEC``, ``_KMS``.

Conventions (see docs/ARCHITECTURE.md): flux density in 1e-17 erg/s/cm2/A, images in nanomaggies per
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

#: Speed of light in Angstrom/s (the same exact value).
SPEED_OF_LIGHT_A_PER_S = SPEED_OF_LIGHT_KMS * 1e13

#: Flux density unit of DESI spectra and of every spectrum in this package, erg/s/cm2/A.
FLUX_UNIT_ERG_S_CM2_A = 1e-17

#: Zero point of the AB magnitude system, Jy: m_AB = -2.5 log10(f_nu / 3631 Jy) (Oke & Gunn 1983, ApJ 266, 713).
AB_ZEROPOINT_JY = 3631.0
#: One jansky in erg/s/cm2/Hz.
JANSKY_ERG_S_CM2_HZ = 1e-23

#: Zero point of the nanomaggy: 1 nanomaggy is AB magnitude 22.5 (SDSS/Legacy Surveys convention,
#: https://www.legacysurvey.org/dr10/description/#photometry).
NANOMAGGY_AB_ZEROPOINT = 22.5

#: Gaussian FWHM / sigma = 2 sqrt(2 ln 2).
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Equivalent Gaussian FWHM of a top-hat aperture of diameter D: sigma = D / 4 (second moment of a uniform disk).
TOPHAT_FWHM_PER_DIAMETER = FWHM_PER_SIGMA / 4

# ----------------------------------------------------------------------------------------
# DESI spectrograph (DESI Collaboration 2022, AJ 164, 207; coadd file data model
# https://desidatamodel.readthedocs.io/en/latest/DESI_SPECTRO_REDUX/SPECPROD/healpix/SURVEY/PROGRAM/PIXGROUP/PIXNUM/coadd-SURVEY-PROGRAM-PIXNUM.html)
# The arm grids below were read off the real coadd in ../shared/data/desi.
# ----------------------------------------------------------------------------------------
#: Merged DESI model grid: 3600-9824 A at 0.8 A, 7781 pixels (docs/ARCHITECTURE.md).
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

#: The emission lines the package simulates and fits, in wavelength order (keys of EMISSION_LINES_VACUUM_A).
MODELLED_EMISSION_LINES = (
    "OII_3727",
    "OII_3730",
    "Hbeta",
    "OIII_4960",
    "OIII_5008",
    "NII_6550",
    "Halpha",
    "NII_6585",
    "SII_6718",
    "SII_6733",
)

#: Their channel names in MaNGA DAP MAPS files (EMLINE_GFLUX header of
#: ../shared/data/manga/manga-7815-3702-MAPS-HYB10-GAU-MILESHC.fits.gz; Westfall et al. 2019, AJ 158, 231).
DAP_CHANNEL_NAMES = {
    "OII_3727": "OII-3727",
    "OII_3730": "OII-3729",
    "Hbeta": "Hb-4862",
    "OIII_4960": "OIII-4960",
    "OIII_5008": "OIII-5008",
    "NII_6550": "NII-6549",
    "Halpha": "Ha-6564",
    "NII_6585": "NII-6585",
    "SII_6718": "SII-6718",
    "SII_6733": "SII-6732",
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
#: Continuum colour of a spectrum, rest-frame Angstrom: log10 of the mean flux density in the blue window over the
#: red one. Both windows avoid the strong emission lines (H-beta 4863, [OIII] 4960/5008, H-alpha+[NII] 6550-6585);
#: the blue one lies above the 4000 A break, so the colour follows the stellar population's age and the dust, as
#: an image's g - r does. Used by the scoreboard's check that a predicted continuum follows its image.
CONTINUUM_COLOUR_BLUE_A = (4050.0, 4450.0)
CONTINUUM_COLOUR_RED_A = (6000.0, 6400.0)

# --- data readers ---
#: Root of the public DESI DR1 healpix-coadd tree (spectroscopic production "iron"); files are at
#: {root}/{survey}/{program}/{healpix // 100}/{healpix}/coadd-{survey}-{program}-{healpix}.fits and redrock-...
#: Source: DESI DR1 data model, https://data.desi.lbl.gov/doc/releases/dr1/ and
#: https://desidatamodel.readthedocs.io/en/latest/DESI_SPECTRO_REDUX/SPECPROD/healpix/index.html
DESI_DR1_HEALPIX_URL = "https://data.desi.lbl.gov/public/dr1/spectro/redux/iron/healpix"
#: HEALPix resolution of DESI healpix coadds (nested scheme, nside = 64). Source: same data model page.
DESI_HEALPIX_NSIDE = 64
#: Legacy Surveys FITS cutout service (https://www.legacysurvey.org/viewer, "Obtaining Images and Raw Data").
LEGACY_CUTOUT_URL = "https://www.legacysurvey.org/viewer/fits-cutout"
#: Legacy Surveys DR10 imaging layer name in the cutout service (https://www.legacysurvey.org/dr10/description/).
LEGACY_CUTOUT_LAYER = "ls-dr10"

# --- simulation ---
# Constants used by galspec_hf.simulate (the synthetic universe with ground truth).
#: Calzetti et al. (2000, ApJ 533, 682), eq. 4: total-to-selective attenuation R'_V of starburst galaxies.
CALZETTI_RV = 4.05
#: Calzetti et al. (2000), eq. 4: k'(lambda) = 2.659 * poly(1/lambda_um) + R'_V; coefficients of the
#: 0.12-0.63 micron branch (-2.156, 1.509, -0.198, 0.011) and the 0.63-2.20 micron branch (-1.857, 1.040).
CALZETTI_BLUE_COEFFS = (-2.156, 1.509, -0.198, 0.011)
CALZETTI_RED_COEFFS = (-1.857, 1.040)
#: Calzetti et al. (2000), eq. 3 / Calzetti (1997): E_s(B-V) of the stars = 0.44 E_g(B-V) of the gas.
CALZETTI_STELLAR_TO_GAS_EBV = 0.44
#: Kennicutt (1998, ARA&A 36, 189), eq. 2: SFR [Msun/yr] = 7.9e-42 L(H-alpha) [erg/s] (Salpeter IMF).
KENNICUTT_SFR_PER_HALPHA_ERG_S = 7.9e-42
#: Pettini & Pagel (2004, MNRAS 348, L59): 12 + log(O/H) = 8.90 + 0.57 N2, N2 = log([NII]6584/H-alpha).
PP04_N2_INTERCEPT = 8.90
PP04_N2_SLOPE = 0.57
#: Pettini & Pagel (2004): 12 + log(O/H) = 8.73 - 0.32 O3N2, O3N2 = log(([OIII]5007/Hb) / ([NII]6584/Ha)).
PP04_O3N2_INTERCEPT = 8.73
PP04_O3N2_SLOPE = -0.32
#: Dopita et al. (2016, Ap&SS 361, 61), eq. 2: 12 + log(O/H) = 8.77 + log([NII]/[SII]) + 0.264 N2.
DOPITA16_INTERCEPT = 8.77
DOPITA16_N2_COEFF = 0.264
#: Maiolino et al. (2008, A&A 488, 463), Table 4: log([OII]3727+3729 / Hbeta) as a polynomial in
#: x = 12 + log(O/H) - 8.69, coefficients c0..c4.
MAIOLINO08_R2_COEFFS = (0.5603, 0.0450, -1.8017, -1.8434, -0.6549)
#: Solar oxygen abundance 12 + log(O/H) = 8.69 (Asplund et al. 2009, ARA&A 47, 481).
SOLAR_OXYGEN_ABUNDANCE = 8.69
#: Radial oxygen-abundance gradient of disc galaxies, dex per effective radius: -0.10 +- 0.09
#: (Sanchez et al. 2014, A&A 563, A49, CALIFA "characteristic gradient").
OXYGEN_GRADIENT_DEX_PER_RE = -0.10
#: Low-density-limit doublet ratios (Osterbrock & Ferland 2006, Fig. 5.8): [OII] 3729/3726 = 1.5 and
#: [SII] 6716/6731 = 1.45 for n_e <~ 100 cm^-3.
OII_DOUBLET_RATIO_LOW_DENSITY = 1.5
SII_DOUBLET_RATIO_LOW_DENSITY = 1.45
#: AGN (Seyfert) narrow-line ratios typical of the Seyfert branch of the BPT diagram (Kewley et al. 2006,
#: MNRAS 372, 961, Fig. 4): log [OIII]5007/Hb = 1.0, log [NII]6584/Ha = 0.0, log [SII]/Ha = -0.2, log [OII]/Hb = 0.5.
AGN_LOG_OIII_HBETA = 1.0
AGN_LOG_NII_HALPHA = 0.0
AGN_LOG_SII_HALPHA = -0.2
AGN_LOG_OII_HBETA = 0.5
#: Star-forming main sequence, Speagle et al. (2014, ApJS 214, 15), eq. 28:
#: log SFR = (0.84 - 0.026 t) log M* - (6.51 - 0.11 t), t = age of the Universe in Gyr; scatter 0.2 dex.
SPEAGLE14_COEFFS = (0.84, -0.026, 6.51, -0.11)
SPEAGLE14_SCATTER_DEX = 0.2
#: Stellar mass-to-light ratio in r from g-r colour: log(M/L_r) = -0.306 + 1.097 (g-r)
#: (Bell et al. 2003, ApJS 149, 289, Table 7, diet Salpeter IMF).
BELL03_MLR_R = (-0.306, 1.097)
#: Absolute AB magnitude of the Sun in r (Willmer 2018, ApJS 236, 47, Table 3: 4.64 for SDSS r; used for DECam r).
SUN_ABSMAG_R_AB = 4.64
#: Intrinsic disk thickness q0 = 0.2 for the inclination -> axis-ratio relation
#: (Holmberg 1958; Haynes & Giovanelli 1984).
DISK_INTRINSIC_AXIS_RATIO = 0.2
#: Moffat beta of ground-based seeing PSFs; turbulence theory predicts 4.765 (Trujillo et al. 2001, MNRAS 328, 977),
#: observed DECam PSFs have broader wings, beta ~ 2.5-3.5; we adopt 3.0.
MOFFAT_BETA = 3.0
#: DESI positioner accuracy: fibers land within ~0.1 arcsec rms of their targets (DESI Collaboration 2022, AJ 164, 207;
#: Silber et al. 2023, AJ 165, 9).
DESI_FIBER_POINTING_RMS_ARCSEC = 0.1
#: Legacy Surveys FIBERFLUX: "predicted flux within a fiber of diameter 1.5 arcsec from this object in 1 arcsec
#: Gaussian seeing" (Legacy Surveys DR9 catalogue description, https://www.legacysurvey.org/dr9/catalogs/). desispec
#: uses the same nominal fiber for MEAN_PSF_TO_FIBER_SPECFLUX (desispec.fiberfluxcorr.psf_to_fiber_flux_correction).
LEGACY_FIBERFLUX_SEEING_FWHM_ARCSEC = 1.0
#: Seeing profile of the simulated DESI fiber exposures: Gaussian, as DESI's fiber-acceptance model is parametrised
#: (desimodel.fastfiberacceptance takes the PSF's Gaussian sigma = FWHM / 2.35 x plate scale;
#: desispec.fiberfluxcorr). A Moffat beta = 3 PSF would put only 0.60 of a point source in the fiber at 1" FWHM
#: against the 0.789 of the nominal Gaussian, below DESI's typical point-source fiber fractions of 0.6-0.8.
DESI_FIBER_PSF_PROFILE = "gaussian"
#: Point-source fraction of that nominal fiber, 1 - exp(-0.75^2 / (2 sigma^2)) with sigma = 1/2.355 arcsec: the value
#: to which desispec.fiberfluxcorr.psf_to_fiber_flux_correction scales its nominal fiber acceptance.
DESISPEC_NOMINAL_POINT_FIBER_FRACTION = 0.789
#: desispec.fiberfluxcorr.psf_to_fiber_flux_correction models non-PSF targets as exponential disks of half-light
#: radius SHAPE_R, saturated at 2 arcsec.
DESISPEC_MAX_HALF_LIGHT_RADIUS_ARCSEC = 2.0
#: Per-pixel background noise (nanomaggies) of Legacy Surveys DR9 grz coadds, measured as the robust (MAD) scatter of
#: the source-clipped pixels (simulate.realism.sky_pixel_noise) on the real cutout
#: ../shared/data/legacysurvey/legacysurvey-dr9-grz-*.fits. (Neighbour differences / sqrt(2) give 0.00131, 0.00199,
#: 0.00638: smaller, because the coadd's noise is correlated between neighbouring pixels.)
LEGACY_PIXEL_NOISE_NMGY = {"g": 0.00166, "r": 0.00250, "z": 0.00782}
#: DESI line-spread Gaussian sigma in pixels (0.8 A) as a linear function of wavelength, sigma = a + b * lambda_A,
#: fit to the second moment of the RESOLUTION rows of the real coadd ../shared/data/desi/coadd-4-80613-*.fits.
DESI_RESOLUTION_SIGMA_PIX = {"b": (0.8945, -1.83e-6), "r": (0.7318, 1.06e-5), "z": (0.7641, 1.96e-5)}
#: Mayall telescope effective collecting area, m^2 (DESI Collaboration 2022, AJ 164, 207; desimodel 8.659 m^2).
DESI_COLLECTING_AREA_M2 = 8.659
#: DESI CCD read noise, electrons rms per pixel (DESI Collaboration 2022, Sec. 5: ~3 e-).
DESI_READ_NOISE_E = 3.0
#: Planck constant times speed of light, erg Angstrom (CODATA 2018).
HC_ERG_A = 6.62607015e-27 * 2.99792458e18

# --- line fitting ---
#: MaNGA spectral resolution R = lambda / FWHM (vacuum Angstrom, R) every 600 A, the median SRES of the real spaxel
#: spectra in ../shared/data/manga/MaNGA_test_spectra.fits.gz (mangadap test data; Yan et al. 2016, AJ 151, 8 quote
#: R ~ 1400-2600). The one MaNGA line-spread function (galspec_hf.spectral.manga_resolution, linear interpolation in
#: between): the simulator's cubes and the line fitter's default.
MANGA_RESOLUTION_TABLE = (
    (3700.0, 1449.0), (4300.0, 1709.0), (4900.0, 1805.0), (5500.0, 1866.0), (6100.0, 1860.0), (6700.0, 1927.0),
    (7300.0, 2049.0), (7900.0, 2177.0), (8500.0, 2328.0), (9100.0, 2417.0), (9700.0, 2345.0), (10300.0, 2014.0),
)  # fmt: skip
#: MANGA_DAPPIXMASK bits (sdss/mangadap, mangadap/config/bitmasks/dap_maps_bits.ini): NOVALUE = 4 (not analysed),
#: NEARBOUND = 8 (fitted parameter at an imposed boundary), DONOTUSE = 30.
DAP_MASK_NOVALUE_BIT = 4
DAP_MASK_NEARBOUND_BIT = 8
DAP_MASK_DONOTUSE_BIT = 30

# ------------------------------------------------------------------------------------------------
# Simulated-universe realism (issue 11): cutout noise correlation and resolved emission
# ------------------------------------------------------------------------------------------------
#: Side of the blocks used for the binned-noise ratio of cutouts (sigma of 4x4 block means x 4 / per-pixel sigma).
NOISE_BIN_BLOCK_PIX = 4
#: Binned-noise ratio of the real DR9 cutout ../shared/data/legacysurvey/legacysurvey-dr9-grz-357.9087-54.8817.fits,
#: r band, sources masked by 3-sigma clipping (g 1.48, r 1.73, z 1.49 with simulate.realism.binned_noise_ratio).
#: Legacy Surveys coadds resample every exposure with Lanczos-3 (Dey et al. 2019, AJ 157, 168), which correlates noise.
LEGACY_BINNED_NOISE_RATIO = 1.73
#: Exposures per band of the coadd whose noise LEGACY_PIXEL_NOISE_NMGY is taken to be: the DECaLS design of 3 passes
#: per band (Dey et al. 2019, AJ 157, 168; legacysurvey.org/decamls: 87, 67, 100 s per pass in g, r, z). The real
#: cutout lies at Dec -54.9, inside the DES footprint, where DR9 stacks more exposures: the reference depth is, if
#: anything, deeper than a DECaLS 3-pass coadd (no exposure count is in the cutout's header to say).
LEGACY_REFERENCE_EXPOSURES = 3
#: Probability that one DECaLS pass covers a given sky position. DECam's focal plane has gaps between its 62 CCDs
#: (Flaugher et al. 2015, AJ 150, 150), so the survey was designed to reach its depth with 2 of its 3 passes
#: (legacysurvey.org/decamls). Each band of a simulated cutout gets Binomial(3, p) exposures (at least 1: a target
#: outside every pass is not in the catalogue). ASSUMPTION, not measured: p = 0.9 gives 73% of targets 3 exposures,
#: 24% 2 and 3% 1; the real distribution is in DR9's survey-bricks-dr9-*.fits (NEXPHIST_*), not in ../shared/data.
DECAM_PASS_COVERAGE_PROBABILITY = 0.9

# ------------------------------------------------------------------------------------------------
# Stellar-continuum templates for the line fit (issue 13; galspec_hf.analysis.continuum)
# ------------------------------------------------------------------------------------------------
#: FWHM resolution of the MILES stellar library, Angstrom, constant in wavelength (Falcon-Barroso et al. 2011,
#: A&A 532, A95: 2.50 A; the FWHM header of the MaNGA DAP's MILES-HC files).
CONTINUUM_TEMPLATE_FWHM_A = 2.50
#: Pixel of the shipped logarithmic rest-frame template grid, km/s (finer than MaNGA's 69 km/s and DESI's 0.8 A =
#: 40-65 km/s pixels, so the broadening kernel is sampled by >= 2 pixels at the templates' own resolution).
CONTINUUM_TEMPLATE_VELSCALE_KMS = 35.0
#: Rest-frame vacuum range of the shipped templates, Angstrom (MILES-HC's range in the DAP: 3575-7400 A).
CONTINUUM_TEMPLATE_RANGE_REST_A = (3575.0, 7400.0)
#: Emission lines masked in the stellar-continuum fit, vacuum rest Angstrom: the ELPSCMSK list of the MaNGA DAP
#: (sdss-mangadap 4.5.0, mangadap/data/emission_lines/elpscmsk.par; Westfall et al. 2019, AJ 158, 231).
CONTINUUM_MASKED_LINES_VACUUM_A = (
    3727.092, 3729.875, 3798.9826, 3836.4790, 3869.86, 3890.1576, 3968.59, 3971.2020, 4102.8991, 4341.691,
    4687.015, 4862.691, 4960.295, 5008.240, 5199.3490, 5201.7055, 5877.243, 6302.046, 6365.535, 6549.86,
    6564.632, 6585.271, 6718.294, 6732.674, 7137.76, 7753.24,
)  # fmt: skip
#: Half-width of the masked window around each line in the continuum fit, km/s (the DAP's pixel mask for its
#: stellar-continuum fit uses 3 x 250 km/s around each ELPSCMSK line: mangadap.util.pixelmask
#: SpectralPixelMask._get_emission_line_bands defaults).
CONTINUUM_LINE_MASK_HALF_WIDTH_KMS = 750.0
#: Night-sky line masked in the continuum fit (observed frame), vacuum Angstrom, half-width Angstrom: the DAP's
#: BADSKY artifact, 5570-5586 A vacuum ([OI] 5577.34 air; mangadap/data/artifacts/badsky.par).
CONTINUUM_SKY_LINES_VACUUM_A = ((5578.0, 8.0),)
#: Ratio of the H-alpha to the stellar-continuum effective radius of star-forming galaxies, Nelson et al. (2016, ApJ
#: 828, 27; 3D-HST stacks): r_e(Ha) / r_e(star) = 1.1 at 1e10 Msun, growing as (M / 1e10 Msun)^0.054. The per-galaxy
#: log-normal scatter (0.1 dex) is an assumption within the spread of their individual maps.
NELSON16_HALPHA_SIZE_RATIO = 1.1
NELSON16_HALPHA_SIZE_MASS_SLOPE = 0.054
HALPHA_SIZE_RATIO_SCATTER_DEX = 0.1
#: Fraction of star-forming H-alpha emitted by discrete HII-region complexes (clumps) rather than diffuse gas:
#: the diffuse fraction of H-alpha is 0.4-0.6 in nearby disks (Oey et al. 2007, ApJ 661, 801, SINGG: mean 0.59;
#: Zurita et al. 2000, A&A 363, 9), so the clumped fraction is drawn from 0.35-0.6.
CLUMP_HALPHA_FRACTION_RANGE = (0.35, 0.6)
#: Number of HII-region complexes per disk and their Gaussian sigma, kpc (kpc-sized star-forming complexes of local
#: spirals, e.g. Elmegreen & Elmegreen 2006, ApJ 650, 644: sizes ~0.3-1 kpc). Clumps sit on the spiral arms with an
#: azimuthal scatter of CLUMP_ARM_SCATTER_RAD.
CLUMP_NUMBER_RANGE = (15, 40)
CLUMP_SIGMA_KPC_RANGE = (0.25, 0.7)
CLUMP_ARM_SCATTER_RAD = 0.35
#: Spiral arms: logarithmic spirals with pitch angle 10-30 deg (Kennicutt 1981, AJ 86, 1847) and m = 2-4 arms;
#: H-alpha arm/interarm contrast (1 + A) / (1 - A) ~ 2-4 (Foyle et al. 2010, ApJ 725, 534), A in 0.3-0.6.
SPIRAL_PITCH_DEG_RANGE = (10.0, 30.0)
SPIRAL_ARM_NUMBERS = (2, 2, 3, 4)
SPIRAL_AMPLITUDE_RANGE = (0.3, 0.6)
#: Diffuse ionised gas powered by old stars (HOLMES) in bulges and retired galaxies: LIER-like emission with
#: H-alpha EW 0.5-3 A (Cid Fernandes et al. 2011, MNRAS 413, 1687, WHAN: retired galaxies EW < 3 A; Belfiore et al.
#: 2016, MNRAS 461, 3111, MaNGA LIERs), [NII]6584/Ha ~ 1-2 and log [SII]/Ha ~ -0.1, log [OIII]5007/Hb ~ 0.1
#: (Belfiore et al. 2016, Figs 2-3; Kewley et al. 2006 LINER branch), log [OII]3727,29/Hb ~ 0.6 (Yan & Blanton
#: 2012, ApJ 747, 61: LINER-like [OII]/Ha ~ 1 with Ha/Hb = 2.86 gives ~0.46; we use 0.6).
LIER_HALPHA_EW_A_QUIESCENT = (0.5, 3.0)
LIER_HALPHA_EW_A_BULGE_OF_STAR_FORMING = (0.5, 1.5)
LIER_NII_HALPHA_RANGE = (1.0, 2.0)
LIER_LOG_SII_HALPHA = -0.1
LIER_LOG_OIII_HBETA = 0.1
LIER_LOG_OII_HBETA = 0.6
#: Radial gradient of the gas colour excess: the Balmer decrement falls with radius in star-forming disks
#: (Nelson et al. 2016b, ApJ 817, L9; Greener et al. 2020, MNRAS 495, 2305, MaNGA). We use
#: E(B-V)_gas(r) = E(B-V)_gas(r_e) x 10**(-g (r/r_e - 1)) with g drawn from 0.1-0.3 dex per r_e (assumption in
#: their range), capped at 3 x the r_e value.
DUST_GRADIENT_DEX_PER_RE_RANGE = (0.1, 0.3)

# ------------------------------------------------------------------------------------------------
# Simulated galaxy population (galspec_hf.simulate.galaxy): scaling relations and parameter ranges
# ------------------------------------------------------------------------------------------------
#: Ratio of the 5500 A light-to-mass ratio of a 100-Myr constant-SFR population to that of a 10-Gyr SSP,
#: computed from the FSPS SSP file SSP_Padova_CKC14z_Kroupa_Z0.0190.fits (METADATA mstar and FLUX): 79.9.
YOUNG_TO_OLD_LIGHT_PER_MASS_5500 = 80.0
#: Duration of the "young" constant-SFR population, yr (the young template of simulate/templates.py).
YOUNG_POPULATION_AGE_YR = 1e8
#: BGS bright magnitude limit r < 19.5 (Hahn et al. 2023, AJ 165, 253), and a bright cut for saturation.
BGS_R_MAG_LIMIT = 19.5
BGS_R_MAG_BRIGHT = 14.0
#: Schechter r-band luminosity function of Blanton et al. (2003, ApJ 592, 819): M* - 5 log h = -20.44, alpha = -1.05;
#: with h = 0.7 (Planck-like) M* = -21.21.
SCHECHTER_MSTAR_R = -20.44 + 5 * math.log10(0.7)
SCHECHTER_ALPHA = -1.05
#: Redshift range of the simulated bright galaxy sample (DESI BGS, Hahn et al. 2023: 0 < z < 0.6, most below 0.4).
SIMULATED_REDSHIFT_RANGE = (0.01, 0.4)
#: Shen et al. (2003, MNRAS 343, 978), eq. 18 and Table 1, late types:
#: R50 = gamma M^alpha (1 + M/M0)^(beta - alpha) kpc, gamma = 0.10, alpha = 0.14, beta = 0.39, M0 = 3.98e10 Msun;
#: log-normal scatter sigma_lnR ~ 0.47 at low mass, 0.34 at high mass (we use 0.4).
SHEN03_LATE = (0.10, 0.14, 0.39, 3.98e10)
SHEN03_SCATTER_LN = 0.4
#: Bulge effective radius / disk scale length ~ 0.2 (Graham & Worley 2008, MNRAS 388, 1708; range 0.1-0.4 here).
BULGE_RE_PER_DISK_H = (0.1, 0.4)
#: Stellar Tully-Fisher relation, Reyes et al. (2011, MNRAS 417, 2347): log V80 = 2.142 + 0.278 (log M* - 10.10).
REYES11_TF = (2.142, 0.278, 10.10)
#: Stellar velocity dispersion - stellar mass, Zahid et al. (2016, ApJ 832, 203):
#: log sigma = 2.07 + 0.286 (log M - 10.26).
ZAHID16_SIGMA = (2.07, 0.286, 10.26)
#: H-alpha attenuation versus stellar mass of star-forming galaxies, Garn & Best (2010, MNRAS 409, 421), eq. 8:
#: A_Ha = 0.91 + 0.77 X + 0.11 X^2 - 0.09 X^3, X = log(M*/1e10 Msun); scatter 0.28 mag.
GARN_BEST10_AHALPHA = (0.91, 0.77, 0.11, -0.09)
GARN_BEST10_SCATTER = 0.28
#: Ionised-gas velocity dispersion of local star-forming disks, 20-50 km/s (Epinat et al. 2010, MNRAS 401, 2113).
GAS_SIGMA_KMS_RANGE = (20.0, 50.0)
#: AGN narrow-line-region dispersion, km/s (NLR FWHM ~ 300-600 km/s; Zakamska et al. 2003, AJ 126, 2125).
AGN_SIGMA_KMS_RANGE = (130.0, 250.0)
#: Mass-metallicity relation, Tremonti et al. (2004, ApJ 613, 898), eq. 3, shifted by -0.25 dex from their CL01
#: calibration to the PP04 N2 scale (Kewley & Ellison 2008, ApJ 681, 1183, Fig. 2), clipped to the N2 range of PP04.
TREMONTI04_MZR = (-1.492, 1.847, -0.08026)
MZR_PP04_OFFSET_DEX = -0.25
PP04_N2_OXYGEN_RANGE = (8.0, 8.85)
#: Off-centre targets: fraction of ALL simulated targets that are off-centre pieces of large galaxies (default of
#: ``simulate_survey(offcentre_fraction=...)`` and ``galspec simulate --offcentre-fraction``). Only galaxies with
#: disk R_e > SIMULATED_OFFCENTRE_MIN_RE_ARCSEC can be pieces; SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION of BGS-selected
#: draws are (0.403 +- 0.004 measured on 20,000 galaxies of seed 0, kcorrect templates, r < 19.5), and an eligible
#: galaxy is made a piece with probability fraction / eligible fraction (capped at 1, so the realised fraction is at
#: most ~0.40; simulate.galaxy.offcentre_draw_probability). ASSUMPTION, not a DESI targeting number: no published
#: fraction of DESI BGS targets (or secondary targets) that are fragments of large galaxies was found; 0.048 keeps
#: the simulator's earlier behaviour (12% of eligible galaxies) and is of the order of the ~5% contamination by
#: galaxy shreds that Di Teodoro, Peek & Wu (2023, AJ, article 123; arXiv:2301.09648) find in Legacy Surveys
#: catalogues after strict cuts. The DESI number should come from the BGS fragment/SGA masking statistics of
#: Hahn et al. (2023, AJ 165, 253) and Moustakas et al. (2023, ApJS 269, 3, SGA) or the target-selection pipeline
#: (secondary targets included) of Myers et al. (2023, AJ 165, 50).
#: SIMULATED_OFFCENTRE_MAJOR_AXIS_FRACTION: fraction of pieces along the major axis.
SIMULATED_OFFCENTRE_FRACTION = 0.048
SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION = 0.4
SIMULATED_OFFCENTRE_MIN_RE_ARCSEC = 1.5
SIMULATED_OFFCENTRE_MAJOR_AXIS_FRACTION = 0.6
#: Fraction of bulge-dominated galaxies (B/T > 0.3) hosting an AGN-like nucleus (Kauffmann et al. 2003, MNRAS 346,
#: 1055: ~40% of massive SDSS galaxies host AGN, most weak; we give 20% a visible nucleus).
SIMULATED_AGN_FRACTION = 0.2
#: Seeing FWHM ranges, arcsec: Legacy Surveys imaging (issue 4: 1.0-1.6) and DESI fiber-delivered seeing
#: (DESI survey operations, Schlafly et al. 2023, AJ 166, 259: median ~1.1 arcsec).
LEGACY_SEEING_FWHM_RANGE_ARCSEC = (1.0, 1.6)
DESI_FIBER_SEEING_FWHM_RANGE_ARCSEC = (0.8, 1.5)
#: DESI BGS effective exposure times, s (nominal 180 s; Schlafly et al. 2023), range simulated.
BGS_EXPTIME_RANGE_S = (150.0, 600.0)
