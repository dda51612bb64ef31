"""Physics and file-format tests of the synthetic universe (galspec_hf.simulate)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from astropy.io import fits

from galspec_hf import constants as C
from galspec_hf.simulate import galaxy as G
from galspec_hf.simulate import imaging as I
from galspec_hf.simulate import spectra as S
from galspec_hf.simulate.ifu import DAP_EMLINE_CHANNELS, simulate_cube, write_maps
from galspec_hf.simulate.survey import DEPTH_STREAM, simulate_galaxy, simulate_survey
from galspec_hf.simulate.templates import load_templates

HALPHA = G.LINE_NAMES.index("Halpha")


def _galaxy(templates, seed=5, **overrides):
    """A drawn galaxy made compact, centred and star-forming so that small grids hold all its light."""
    base = G.sample_galaxy(np.random.default_rng(seed), templates, 1, offcentre=False)
    values = dict(
        disk_scale_arcsec=0.6,
        disk_re_arcsec=1.0,
        bulge_re_arcsec=0.3,
        rotation_turnover_arcsec=0.3,
        inclination_deg=60.0,
        disk_axis_ratio=0.53,
        position_angle_deg=30.0,
        halpha_flux_sf_intrinsic=500.0,
        centre_east_arcsec=0.0,
        centre_north_arcsec=0.0,
        fiber_east_arcsec=0.0,
        fiber_north_arcsec=0.0,
        fiber_seeing_fwhm_arcsec=1.2,
        agn=False,
        agn_halpha_flux=0.0,
        redshift=0.08,
        oxygen_central=8.6,
        oxygen_gradient_dex_per_re=-0.15,
        halpha_size_ratio=1.0,  # H-alpha as compact as the stars, so the small grids below hold all of it too
    )
    values.update(overrides)
    return dataclasses.replace(base, **values)


def _grid(size=140, pixel=0.131):
    east, north = I.pixel_grid(size, pixel)
    return east, north, pixel


# ------------------------------------------------------------------------------------------------
# Physics
# ------------------------------------------------------------------------------------------------
def test_fiber_apertures_tiling_a_galaxy_sum_to_its_total_flux(templates):
    galaxy = _galaxy(templates)
    east, north, pixel = _grid()
    maps = G.render_maps(galaxy, east, north, pixel, subsample=3)
    # the compact galaxy is (almost) entirely inside the grid, and the maps are normalised analytically
    assert maps["disk"].sum() == pytest.approx(1.0, abs=2e-3)
    assert maps["lines_sf"][HALPHA].sum() == pytest.approx(G.total_line_fluxes(galaxy)[HALPHA], rel=2e-3)
    spacing = 0.6
    positions = np.arange(-7.2, 7.21, spacing)
    total = np.zeros(3)
    spectrum_sum = None
    for pe in positions:
        for pn in positions:
            fiber = S.fiber_model(galaxy, templates, maps, east, north, pe, pn, apply_resolution=False)
            total += [fiber["bulge_fraction"], fiber["disk_fraction"], fiber["line_flux"][HALPHA]]
            r = fiber["flux"]["r"]
            spectrum_sum = r.copy() if spectrum_sum is None else spectrum_sum + r
    per_area = spacing**2 / (math.pi * (C.DESI_FIBER_DIAMETER_ARCSEC / 2) ** 2)
    np.testing.assert_allclose(
        total * per_area,
        [maps["bulge"].sum(), maps["disk"].sum(), maps["lines_sf"][HALPHA].sum()],
        rtol=3e-3,
    )
    # the summed r-arm spectrum equals the whole galaxy's continuum + lines
    whole = S.fiber_model(galaxy, templates, maps, east, north, 0.0, 0.0, apply_resolution=False)
    assert whole["bulge_fraction"] < 0.8 * maps["bulge"].sum()  # one fiber sees only part of the galaxy
    integrated = np.sum(spectrum_sum) * per_area
    # a fiber with an infinite aperture would see everything: compare against the analytic total
    wave_r = S.arm_wavelengths()["r"]
    spectra = G.component_spectra_rest(templates, galaxy)
    wave_obs = templates.wavelength_rest * (1 + galaxy.redshift)
    scale = galaxy.continuum_scale / (1 + galaxy.redshift)
    continuum = scale * (
        maps["bulge"].sum() * np.interp(wave_r, wave_obs, spectra["bulge"])
        + maps["disk"].sum() * np.interp(wave_r, wave_obs, spectra["disk"])
    )
    line_part = maps["lines_sf"].sum(axis=(1, 2))
    line_wave = G.LINE_WAVELENGTHS_REST_A * (1 + galaxy.redshift)
    in_arm = (line_wave > wave_r[0] + 20) & (line_wave < wave_r[-1] - 20)
    expected = np.sum(continuum) * C.DESI_WAVELENGTH_STEP_A + line_part[in_arm].sum()
    assert integrated * C.DESI_WAVELENGTH_STEP_A == pytest.approx(expected, rel=5e-3)


def test_old_bulge_is_redder_in_g_minus_r_than_a_star_forming_disk(templates):
    galaxy = _galaxy(templates, young_light_fraction=0.7, ebv_disk=0.05, ebv_bulge=0.0, bulge_light_fraction=0.5)
    weights = I.band_weights(galaxy, templates)
    bulge_gr = -2.5 * math.log10(weights["g"][0] / weights["r"][0])
    disk_gr = -2.5 * math.log10(weights["g"][1] / weights["r"][1])
    assert bulge_gr > disk_gr + 0.2
    # the same holds in the rendered image: the centre (bulge) is redder than the disk outskirts
    east, north, pixel = _grid(120, C.LEGACY_PIXEL_SCALE_ARCSEC)
    maps = G.render_maps(galaxy, east, north, pixel, subsample=3)
    image = I.render_image(galaxy, templates, maps, pixel, 1, 10, weights=weights)
    radius = np.hypot(*I.pixel_grid(image.shape[1], pixel))
    centre, ring = radius < 0.4, (radius > 1.5) & (radius < 2.5)
    gr_centre = -2.5 * math.log10(image[0][centre].sum() / image[1][centre].sum())
    gr_ring = -2.5 * math.log10(image[0][ring].sum() / image[1][ring].sum())
    assert gr_centre > gr_ring + 0.05


def test_fast_numerical_schemes_agree_with_the_direct_ones(templates):
    """The speed-ups of the simulator (issue "A universe that does not give the answer away", item 1) against the
    direct evaluations: the float32 spiral cosine (< 1e-6); the half-grid sub-pixel loop of centred galaxies (to
    that cosine's precision, evaluated at angles differing by pi); the exp-based stellar dust (< 1e-14); the cached
    band integrals and per-line photometry (exact)."""
    east, north, pixel = _grid(96, C.LEGACY_PIXEL_SCALE_ARCSEC)
    for arms in (2, 3):
        galaxy = _galaxy(templates, spiral_arms=arms, spiral_amplitude=0.5, spiral_pitch_deg=12.0,
                         clump_number=20, clump_halpha_fraction=0.4)  # fmt: skip
        major, minor = G.galaxy_frame(galaxy, east, north)
        minor = minor / galaxy.disk_axis_ratio
        h = galaxy.disk_scale_arcsec
        radius = np.hypot(major, minor)
        phase = np.arctan2(minor, major) - galaxy.spiral_phase_rad
        phase -= np.log(np.maximum(radius, 1e-6) / h) / math.tan(math.radians(galaxy.spiral_pitch_deg))
        direct = galaxy.spiral_amplitude * (1 - np.exp(-((radius / h) ** 2))) * np.cos(arms * phase)
        np.testing.assert_allclose(G._spiral_wave(galaxy, major, minor, h), direct, rtol=0, atol=1e-6)
        # a centred galaxy on pixel_grid is rendered from half of the rows; the whole-grid loop gives the same maps
        # (bulge to rounding; disk and lines to the float32 cosine of the spiral arms)
        assert G._point_symmetric_half(galaxy, east, north) == 48
        half = G.render_maps(galaxy, east, north, pixel, subsample=3)
        original = G._point_symmetric_half
        try:
            G._point_symmetric_half = lambda *args: None
            whole = G.render_maps(galaxy, east, north, pixel, subsample=3)
        finally:
            G._point_symmetric_half = original
        np.testing.assert_allclose(half["bulge"], whole["bulge"], rtol=1e-12, atol=1e-15 * whole["bulge"].max())
        for key in ("disk", "lines_sf"):
            np.testing.assert_allclose(half[key], whole[key], rtol=1e-6, atol=1e-12 * whole[key].max())
        # off-centre galaxies use the whole grid
        assert G._point_symmetric_half(dataclasses.replace(galaxy, centre_east_arcsec=0.3), east, north) is None
    # stellar dust: exp(-0.4 ln 10 E k) = 10**(-0.4 k E)
    k = G.calzetti_k(templates.wavelength_rest)
    for ebv in (0.02, 0.4, 1.5):
        np.testing.assert_allclose(G._stellar_dust(templates, k, ebv), 10.0 ** (-0.4 * k * ebv), rtol=1e-14)
    # cached component spectra are read-only and equal to a fresh computation
    galaxy = _galaxy(templates, ebv_disk=0.123)
    spectra = G.component_spectra_rest(templates, galaxy, broaden=False)
    assert not spectra["disk"].flags.writeable
    assert G.component_spectra_rest(templates, galaxy, broaden=False)["disk"] is spectra["disk"]
    # band integrals on the template grid and per-line photometry: the same numbers as the generic functions
    wave_obs, flux_obs = G.observed_frame(templates.wavelength_rest, spectra["disk"], galaxy.redshift,
                                          galaxy.continuum_scale)  # fmt: skip
    line_wave = G.LINE_WAVELENGTHS_REST_A * (1 + galaxy.redshift)
    for band in C.LEGACY_BANDS:
        fast = G.template_band_nanomaggies(templates, spectra["disk"], galaxy.redshift, galaxy.continuum_scale, band)
        assert fast == float(G.ab_nanomaggies(wave_obs, flux_obs * C.FLUX_UNIT_ERG_S_CM2_A, band))
        each = [G.line_nanomaggies(line_wave[i : i + 1], np.array([1e-17]), band) for i in range(line_wave.size)]
        np.testing.assert_array_equal(G.line_nanomaggies_each(line_wave, 1e-17, band), each)
    # the survey takes the total line fluxes that the selection computed
    drawn, lines = G.sample_galaxy_and_lines(np.random.default_rng(11), templates, 1)
    np.testing.assert_array_equal(lines, G.total_line_fluxes(drawn))


def test_fiber_kernels_match_closed_forms():
    """Gaussian seeing: a point source puts 1 - exp(-R^2 / 2 sigma^2) in a fiber of radius R (0.789 for the Legacy
    FIBERFLUX convention, 1" FWHM, R = 0.75"); without seeing an exponential disk puts P(2, R/h) = 1 - (1 + x) e^-x,
    x = R / h, in it (Freeman 1970 profile)."""
    radius = C.DESI_FIBER_DIAMETER_ARCSEC / 2
    for fwhm in (0.8, 1.0, 1.4):
        sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        _, fraction = S.fiber_kernel_table(fwhm, profile="gaussian")
        assert fraction[0] == pytest.approx(1 - math.exp(-(radius**2) / (2 * sigma**2)), rel=2e-3)
    assert S.fiber_kernel_table(1.0, profile="gaussian")[1][0] == pytest.approx(
        C.DESISPEC_NOMINAL_POINT_FIBER_FRACTION, abs=2e-3
    )
    for re in (0.3, 1.0, 2.5):
        x = radius / (re / 1.678)
        expected = 1 - (1 + x) * math.exp(-x)
        assert S.exponential_disk_fiber_fraction(re, 0.1) == pytest.approx(expected, rel=0.015)  # ~no seeing
    # a tiny disk is a point source; more seeing or a fiber offset lets less of it in
    assert S.exponential_disk_fiber_fraction(0.001, 1.2) == pytest.approx(S.fiber_kernel_table(1.2)[1][0], rel=1e-6)
    assert S.exponential_disk_fiber_fraction(0.5, 1.4) < S.exponential_disk_fiber_fraction(0.5, 1.0)
    assert S.exponential_disk_fiber_fraction(0.5, 1.0, 0.4) < S.exponential_disk_fiber_fraction(0.5, 1.0, 0.0)


def test_psf_to_fiber_factor_follows_desispec(templates):
    """desispec.fiberfluxcorr.psf_to_fiber_flux_correction: for a point source the factor is the nominal fiber's
    point-source fraction, 0.789, whatever the seeing and fiber offset; for an extended source in worse seeing it is
    lower (the point-source calibration over-corrects the extended source's smaller seeing loss)."""
    point = _galaxy(templates, disk_scale_arcsec=1e-5, disk_re_arcsec=1.7e-5, bulge_re_arcsec=1e-5)
    assert S.shape_r_arcsec(point) < 0.005
    fractions = []
    for seeing, east in ((0.9, 0.0), (1.4, 0.2)):
        galaxy = dataclasses.replace(point, fiber_seeing_fwhm_arcsec=seeing, fiber_east_arcsec=east)
        assert S.psf_to_fiber_factors([galaxy])[0] == pytest.approx(0.789, abs=3e-3)
        fractions.append(S.point_source_fractions([galaxy])[0])  # the file flux is the fiber flux / this
    assert fractions[0] > 0.8 and fractions[1] < 0.6  # Gaussian seeing: 0.86 at 0.9", ~0.5 at 1.4" and 0.2" off
    disk = _galaxy(templates, bulge_light_fraction=0.0, fiber_seeing_fwhm_arcsec=1.4)
    assert S.shape_r_arcsec(disk) == pytest.approx(1.678 * disk.disk_scale_arcsec, rel=1e-3)  # exponential r_e
    assert 0.6 < S.psf_to_fiber_factors([disk])[0] < 0.789


def test_velocity_field_shifts_halpha_by_the_expected_amount_on_each_side(templates):
    galaxy = _galaxy(templates, vmax_kms=220.0, sigma_gas_kms=30.0)
    no_lines = dataclasses.replace(galaxy, halpha_flux_sf_intrinsic=0.0)
    east, north, pixel = _grid()
    maps = G.render_maps(galaxy, east, north, pixel, subsample=3)
    maps_cont = G.render_maps(no_lines, east, north, pixel, subsample=3)
    pa = math.radians(galaxy.position_angle_deg)
    # independent expectation: K-weighted mean of V(R) sin(i) cos(phi) over the H-alpha light (arctan rotation curve)
    major = east * math.sin(pa) + north * math.cos(pa)
    minor = east * math.cos(pa) - north * math.sin(pa)
    radius = np.hypot(major, minor / galaxy.disk_axis_ratio)
    v_los = (
        (2 / math.pi)
        * galaxy.vmax_kms
        * np.arctan(radius / galaxy.rotation_turnover_arcsec)
        * math.sin(math.radians(galaxy.inclination_deg))
        * np.divide(major, radius, out=np.zeros_like(radius), where=radius > 0)
    )
    measured = {}
    for side in (+1, -1):
        fe, fn = side * 1.5 * math.sin(pa), side * 1.5 * math.cos(pa)
        weights = S.fiber_weights(east, north, fe, fn, galaxy.fiber_seeing_fwhm_arcsec)
        halpha_light = maps["lines_sf"][HALPHA] * weights
        v_expected = float((halpha_light * v_los).sum() / halpha_light.sum())
        spec = S.fiber_model(galaxy, templates, maps, east, north, fe, fn, apply_resolution=False)["flux"]["r"]
        cont = S.fiber_model(no_lines, templates, maps_cont, east, north, fe, fn, apply_resolution=False)["flux"]["r"]
        wave = S.arm_wavelengths()["r"]
        rest = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + galaxy.redshift)
        window = np.abs(wave - rest) < 10.0
        line = (spec - cont)[window]
        centroid = float((wave[window] * line).sum() / line.sum())
        v_measured = C.SPEED_OF_LIGHT_KMS * (centroid / rest - 1)
        measured[side] = v_measured
        assert abs(v_expected) > 60.0
        assert v_measured == pytest.approx(v_expected, abs=6.0)
    assert measured[+1] > 60.0 and measured[-1] < -60.0  # receding along +major axis, approaching opposite


def test_noise_actually_added_matches_the_written_ivar(templates, tmp_path):
    galaxy = _galaxy(templates, exptime_s=300.0)
    east, north, pixel = _grid()
    maps = G.render_maps(galaxy, east, north, pixel, subsample=3)
    model = S.fiber_model(galaxy, templates, maps, east, north)["flux"]
    rng = np.random.default_rng(11)
    observed = [S.observe(model, galaxy.exptime_s, rng) for _ in range(3)]
    photometry = {
        "flux": {b: 1.0 for b in "grz"},
        "fiberflux": {b: 0.5 for b in "grz"},
        "flux_ivar": {b: 1.0 for b in "grz"},
    }
    path = S.write_coadd(tmp_path / "coadd.fits", [galaxy] * 3, [photometry] * 3, observed, tileid=1)
    chi2, n = 0.0, 0
    with fits.open(path) as hdul:
        # the file is calibrated for point sources: flux in the fiber = file flux x point-source fiber fraction;
        # the FIBERMAP carries desispec's MEAN_PSF_TO_FIBER_SPECFLUX (to the nominal Legacy-convention fiber)
        factor = S.point_source_fractions([galaxy] * 3)[:, None]  # (3, 1)
        assert np.all((factor > 0) & (factor < 1))
        np.testing.assert_allclose(
            hdul["FIBERMAP"].data["MEAN_PSF_TO_FIBER_SPECFLUX"], S.psf_to_fiber_factors([galaxy] * 3), rtol=1e-6
        )
        for arm in S.ARMS:
            flux = hdul[f"{arm.upper()}_FLUX"].data.astype(np.float64) * factor
            ivar = hdul[f"{arm.upper()}_IVAR"].data.astype(np.float64) / factor**2
            chi2 += float((((flux - model[arm][None]) ** 2) * ivar).sum())
            n += flux.size
    assert chi2 / n == pytest.approx(1.0, abs=0.04)
    # the noise is sky-line dominated: ivar drops at the [OI] 5577 sky line
    wave_b = S.arm_wavelengths()["b"]
    ivar_b = observed[0]["b"][1]
    at_line = ivar_b[np.argmin(np.abs(wave_b - 5578.9))]
    assert at_line < 0.3 * np.median(ivar_b[(wave_b > 5400) & (wave_b < 5500)])


def test_imaging_depth_is_drawn_per_band_and_sets_the_cutout_noise():
    # exposures per band: Binomial(3 passes, p) without zeros; p = 0.9 -> 3: 0.729, 2: 0.243, 1: 0.027 (/ 0.999)
    rng = np.random.default_rng(3)
    draws = np.array([list(I.draw_image_exposures(rng).values()) for _ in range(4000)])  # (4000, 3 bands)
    assert draws.min() == 1 and draws.max() == C.LEGACY_REFERENCE_EXPOSURES
    p = C.DECAM_PASS_COVERAGE_PROBABILITY
    assert np.mean(draws == 3) == pytest.approx(p**3 / (1 - (1 - p) ** 3), abs=0.015)
    assert np.mean(draws == 1) == pytest.approx(3 * p * (1 - p) ** 2 / (1 - (1 - p) ** 3), abs=0.006)
    assert set(I.draw_image_exposures(rng, pass_coverage=1.0).values()) == {3}
    with pytest.raises(ValueError, match="pass_coverage"):
        I.draw_image_exposures(rng, pass_coverage=0.0)
    # a blank sky: the background sigma grows as sqrt(reference / exposures), band by band; ivar says the same
    blank = np.zeros((3, 256, 256))
    noisy, ivar = I.add_image_noise(blank, np.random.default_rng(4), {"g": 1, "r": 3, "z": 2})
    for i, (band, n) in enumerate({"g": 1, "r": 3, "z": 2}.items()):
        expected = C.LEGACY_PIXEL_NOISE_NMGY[band] * math.sqrt(C.LEGACY_REFERENCE_EXPOSURES / n)
        assert noisy[i].std() == pytest.approx(expected, rel=0.05)
        np.testing.assert_allclose(1 / np.sqrt(ivar[i]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="exposures"):
        I.background_pixel_noise_nmgy("r", 0)


def test_survey_records_each_cutouts_depth_and_uses_it(templates, monkeypatch):
    # the depth has its own random stream: the galaxy's other draws do not move with it
    sims = [simulate_galaxy(i, 5, templates, cutout_size=64) for i in range(12)]
    for index, sim in enumerate(sims):
        exposures = {band: sim.truth[f"image_exposures_{band}"] for band in C.LEGACY_BANDS}
        assert exposures == I.draw_image_exposures(np.random.default_rng([5, index, DEPTH_STREAM]))
    depths = {sim.truth["image_exposures_r"] for sim in sims}
    assert C.LEGACY_REFERENCE_EXPOSURES in depths and min(depths) < C.LEGACY_REFERENCE_EXPOSURES
    # every galaxy at the reference depth instead: the same galaxies and the same fiber spectra, to the bit
    monkeypatch.setattr("galspec_hf.simulate.survey.draw_image_exposures",
                        lambda rng: dict.fromkeys(C.LEGACY_BANDS, C.LEGACY_REFERENCE_EXPOSURES))  # fmt: skip
    for index, sim in enumerate(sims):
        reference = simulate_galaxy(index, 5, templates, cutout_size=64)
        depth_keys = {f"image_exposures_{band}" for band in C.LEGACY_BANDS}
        assert {k: v for k, v in reference.truth.items() if k not in depth_keys} == {
            k: v for k, v in sim.truth.items() if k not in depth_keys
        }
        for arm in S.ARMS:
            np.testing.assert_array_equal(reference.observed[arm][0], sim.observed[arm][0])
    # catalogue flux errors follow the depth: ivar x sigma_background^2 is the same for every depth
    for sim in sims:
        sigma = I.background_pixel_noise_nmgy("r", sim.truth["image_exposures_r"])
        assert 1 / (sim.photometry["flux_ivar"]["r"] * sigma**2) == pytest.approx(
            math.pi * (sim.galaxy.psf_fwhm_r_arcsec / C.LEGACY_PIXEL_SCALE_ARCSEC) ** 2
            + math.pi * (2 * sim.galaxy.disk_re_arcsec / C.LEGACY_PIXEL_SCALE_ARCSEC) ** 2, rel=1e-9
        )


def test_line_fluxes_in_the_truth_maps_equal_the_injected_ones(templates, tmp_path):
    galaxy = _galaxy(templates, disk_scale_arcsec=0.5, disk_re_arcsec=0.84, redshift=0.05)
    cube = simulate_cube(galaxy, templates, n_spaxels=20, rng=None)
    path = write_maps(tmp_path / "maps.fits.gz", galaxy, cube, "1-1")
    injected = G.total_line_fluxes(galaxy)
    with fits.open(path) as hdul:
        header = hdul["EMLINE_GFLUX"].header
        channels = {header[f"C{k + 1:02d}"]: k for k in range(len(DAP_EMLINE_CHANNELS))}
        gflux = hdul["EMLINE_GFLUX"].data
        halpha_map = gflux[channels["Ha-6564"]]
        nii_map = gflux[channels["NII-6585"]]
    assert halpha_map.sum() == pytest.approx(injected[HALPHA], rel=0.01)
    assert nii_map.sum() == pytest.approx(injected[G.LINE_NAMES.index("NII_6585")], rel=0.01)
    # and the cube's own H-alpha line (cube minus its continuum) carries the map's flux spaxel by spaxel
    no_lines = dataclasses.replace(
        galaxy, halpha_flux_sf_intrinsic=0.0, lier_halpha_flux_bulge=0.0, lier_halpha_flux_disk=0.0
    )
    continuum = simulate_cube(no_lines, templates, 20, rng=None)
    wave = cube["wavelength"]
    centre = C.EMISSION_LINES_VACUUM_A["Halpha"] * (1 + galaxy.redshift)
    window = np.abs(wave - centre) < 9.0
    dlam = wave * math.log(10) * C.MANGA_LOGLAM_STEP
    line_cube = ((cube["model"] - continuum["model"])[window] * dlam[window, None, None]).sum(axis=0)
    bright = halpha_map > 0.05 * halpha_map.max()
    np.testing.assert_allclose(line_cube[bright], halpha_map[bright], rtol=0.03)
    # metallicity gradient: [NII]/H-alpha falls outwards
    ratio = nii_map / np.maximum(halpha_map, 1e-30)
    r = np.hypot(cube["east"], cube["north"])
    assert ratio[r < 0.6].mean() > ratio[(r > 2.5) & (r < 4)].mean()


def test_simulation_is_deterministic_for_a_seed(tmp_path, template_source):
    kwargs = dict(n_galaxies=3, n_ifu=0, templates=template_source, cutout_size=32, progress=False)
    a = simulate_survey(tmp_path / "a", seed=7, **kwargs)
    b = simulate_survey(tmp_path / "b", seed=7, **kwargs)
    c = simulate_survey(tmp_path / "c", seed=8, **kwargs)
    for name in ("B_FLUX", "R_IVAR", "FIBERMAP"):
        da, db, dc = (fits.getdata(w["coadd"][0], name) for w in (a, b, c))
        if name == "FIBERMAP":
            assert (da == db).all() and not (da["TARGET_RA"] == dc["TARGET_RA"]).all()
        else:
            np.testing.assert_array_equal(da, db)
            assert not np.array_equal(da, dc)
    for pa, pb in zip(a["cutouts"], b["cutouts"], strict=True):
        np.testing.assert_array_equal(fits.getdata(pa), fits.getdata(pb))
    import pyarrow.parquet as pq

    assert pq.read_table(a["truth"]).equals(pq.read_table(b["truth"]))
    # galaxy i does not depend on how many galaxies are drawn
    single = simulate_galaxy(1, 7, load_templates(template_source), cutout_size=32)
    np.testing.assert_array_equal(single.image, fits.getdata(a["cutouts"][1]))


# ------------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_survey(tmp_path_factory, template_source):
    out = tmp_path_factory.mktemp("survey")
    return simulate_survey(
        out, n_galaxies=5, n_ifu=1, seed=3, templates=template_source, targets_per_file=3, cutout_size=48,
        ifu_spaxels=14,
        progress=False,
    )  # fmt: skip


def test_survey_layout_and_files_open_with_astropy(small_survey):
    assert len(small_survey["coadd"]) == 2 and len(small_survey["redrock"]) == 2
    assert all(p.name.startswith("coadd-") and p.parent.name == "desi" for p in small_survey["coadd"])
    assert len(small_survey["cutouts"]) == 5 and len(small_survey["logcubes"]) == 1 and len(small_survey["maps"]) == 1
    with fits.open(small_survey["coadd"][0]) as hdul:
        names = [h.name for h in hdul]
        for arm in "BRZ":
            for kind in ("WAVELENGTH", "FLUX", "IVAR", "MASK", "RESOLUTION"):
                assert f"{arm}_{kind}" in names
        assert hdul["B_FLUX"].data.shape == (3, 2751) and hdul["R_FLUX"].data.shape == (3, 2326)
        assert hdul["Z_RESOLUTION"].data.shape == (3, 11, 2881)
        assert hdul["B_FLUX"].header["BUNIT"] == "10**-17 erg/(s cm2 Angstrom)"
        fibermap = hdul["FIBERMAP"].data
        for col in (
            "TARGETID",
            "TARGET_RA",
            "TARGET_DEC",
            "MEAN_FIBER_RA",
            "MEAN_FIBER_DEC",
            "COADD_FIBERSTATUS",
            "OBJTYPE",
        ):
            assert col in fibermap.columns.names
        assert list(fibermap["OBJTYPE"]) == ["TGT"] * 3
        # fiber offsets: ~0.1 arcsec pointing scatter around the target
        dec = fibermap["TARGET_DEC"]
        offset = np.hypot(
            (fibermap["MEAN_FIBER_RA"] - fibermap["TARGET_RA"]) * np.cos(np.radians(dec)),
            fibermap["MEAN_FIBER_DEC"] - dec,
        )
        assert np.all(offset * 3600 < 0.6)
    with fits.open(small_survey["redrock"][0]) as hdul:
        redshifts = hdul["REDSHIFTS"].data
        for col in ("TARGETID", "Z", "ZERR", "ZWARN", "CHI2", "SPECTYPE", "SUBTYPE", "DELTACHI2"):
            assert col in redshifts.columns.names
        assert "FIBERMAP" in hdul
        assert np.all((redshifts["Z"] > 0.005) & (redshifts["Z"] < 0.41))
    with fits.open(small_survey["cutouts"][0]) as hdul:
        header = hdul[0].header
        assert hdul[0].data.shape == (3, 48, 48) and hdul[0].data.dtype == np.dtype(">f4")
        assert header["BANDS"] == "grz" and header["CD1_1"] < 0 and header["CTYPE1"] == "RA---TAN"
    with fits.open(small_survey["logcubes"][0]) as hdul:
        assert hdul["FLUX"].data.shape == (C.MANGA_NUM_PIXELS, 14, 14)
        assert hdul["FLUX"].header["CTYPE3"] == "WAVE-LOG"
        np.testing.assert_allclose(hdul["WAVE"].data[0], 10**C.MANGA_LOGLAM0)
    with fits.open(small_survey["maps"][0]) as hdul:
        for name in (
            "SPX_SKYCOO",
            "EMLINE_GFLUX",
            "EMLINE_GFLUX_IVAR",
            "EMLINE_GFLUX_MASK",
            "EMLINE_GVEL",
            "STELLAR_VEL",
        ):
            assert name in hdul
        assert hdul["EMLINE_GFLUX"].header["C19"] == "Ha-6564"
    import pyarrow.parquet as pq

    truth = pq.read_table(small_survey["truth"])
    assert truth.num_rows == 5
    for col in ("targetid", "redshift", "line_flux_fiber_Halpha", "plateifu", "coadd_file", "cutout_file"):
        assert col in truth.column_names


def test_cutout_wcs_is_centred_on_the_target(small_survey):
    from astropy.wcs import WCS

    with fits.open(small_survey["cutouts"][0]) as hdul:
        wcs = WCS(hdul[0].header).celestial
        ra, dec = hdul[0].header["CRVAL1"], hdul[0].header["CRVAL2"]
        x, y = wcs.world_to_pixel_values(ra, dec)
    assert (x, y) == pytest.approx((23.5, 23.5))  # the centre of a 48-pixel image (0-based)


def test_bad_arguments_raise_value_errors_naming_them(templates, tmp_path):
    with pytest.raises(ValueError, match="n_galaxies"):
        simulate_survey(tmp_path, n_galaxies=0)
    with pytest.raises(ValueError, match="n_ifu"):
        simulate_survey(tmp_path, n_galaxies=2, n_ifu=3)
    with pytest.raises(ValueError, match="cutout_size"):
        simulate_galaxy(0, 0, templates, cutout_size=33)
    with pytest.raises(ValueError, match="ebv"):
        from galspec_hf.simulate.dust import calzetti_transmission

        calzetti_transmission(np.array([5000.0]), -0.1)


def test_cli_simulate_writes_a_survey(tmp_path, capsys, template_source):
    from galspec_hf.cli import main

    extra = [] if template_source is None else ["--templates", template_source]
    code = main(
        [
            "simulate",
            "--n-galaxies",
            "2",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--cutout-size",
            "32",
            "--no-progress",
        ]
        + extra
    )
    assert code == 0
    assert len(list((tmp_path / "desi").glob("coadd-*.fits"))) == 1
    assert (tmp_path / "truth.parquet").is_file()
    assert main(["simulate", "--n-galaxies", "0", "--out", str(tmp_path)]) == 2
    assert "n-galaxies" in capsys.readouterr().err


def test_project_readers_read_the_synthetic_files_in_the_right_frame(small_survey, templates, tmp_path):
    readers = pytest.importorskip("galspec_hf.io")
    import pyarrow.parquet as pq

    truth = pq.read_table(small_survey["truth"]).to_pylist()
    coadd = readers.read_desi_coadd(small_survey["coadd"][0])
    assert list(coadd.targetid) == [row["targetid"] for row in truth[:3]]
    expected = np.array([[row["fiber_east_arcsec"], row["fiber_north_arcsec"]] for row in truth[:3]])
    np.testing.assert_allclose(coadd.fiber_offset_arcsec, expected, atol=2e-3)
    assert coadd.flux.shape == (3, C.DESI_NUM_PIXELS)
    # an off-centre target: the reader's sky offsets put the galaxy's light where the truth says its centre is
    sim = simulate_galaxy(0, 11, templates, cutout_size=64, offcentre=True)
    galaxy = sim.galaxy
    path = I.write_cutout(tmp_path / "cutout.fits", sim.image, galaxy.target_ra_deg, galaxy.target_dec_deg)
    cutout = readers.read_legacy_cutout(path)
    clean = np.clip(cutout.image[1], 0, None)
    peak = np.unravel_index(np.argmax(_smooth(clean)), clean.shape)
    offset = cutout.pixel_to_offset_arcsec(float(peak[1]), float(peak[0]))
    centre = np.array([galaxy.centre_east_arcsec, galaxy.centre_north_arcsec])
    assert np.hypot(*centre) > 1.0
    np.testing.assert_allclose(offset, centre, atol=0.5)
    maps = readers.read_manga_maps(small_survey["maps"][0])
    flux, _, mask = maps.line_map("Ha-6564")
    row = next(r for r in truth if r["plateifu"])
    assert 0.2 * row["line_flux_total_Halpha"] < flux.sum() <= row["line_flux_total_Halpha"]  # a 7" field
    assert (mask == 0).all()
    # the cube is centred on the galaxy: its stellar light peaks at the centre (H-alpha may peak on an HII clump)
    cube = readers.read_manga_cube(small_survey["logcubes"][0])
    continuum = np.median(cube.flux, axis=0)  # (ny, nx)
    peak = np.unravel_index(np.argmax(continuum), continuum.shape)
    assert np.hypot(*cube.spaxel_offset_arcsec[peak]) < 1.0
    np.testing.assert_allclose(cube.spaxel_offset_arcsec, maps.spaxel_offset_arcsec, atol=1e-6)


def _smooth(image: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, 2.0)


def test_default_cutout_covers_the_small_preset_image_with_the_shift_margin():
    """`galspec simulate` and simulate_survey write cutouts the default model can train on: the small preset's image
    plus training's random shift on each side, and that image covers the largest simulated cube (48 spaxels)."""
    import argparse

    from galspec_hf import GalSpecConfig
    from galspec_hf.commands import simulate as simulate_command
    from galspec_hf.constants import MANGA_SPAXEL_ARCSEC
    from galspec_hf.simulate.survey import DEFAULT_CUTOUT_SIZE
    from galspec_hf.training.args import build_parser

    parser = argparse.ArgumentParser()
    simulate_command.register(parser.add_subparsers())
    cli_default = parser.parse_args(["simulate", "--out", "x", "--n-galaxies", "1"]).cutout_size
    assert cli_default == DEFAULT_CUTOUT_SIZE
    config = GalSpecConfig.from_preset("small")
    max_shift = build_parser().parse_args(["--dataset", "x", "--output_dir", "y"]).max_shift_pixels
    assert DEFAULT_CUTOUT_SIZE >= config.image_size + 2 * max_shift
    assert config.image_size * config.pixel_scale / 2 >= 48 * MANGA_SPAXEL_ARCSEC / 2
