"""Realism checks: synthetic versus the real DESI spectrum and Legacy cutout in ../shared/data.

``python -m galspec_hf.simulate.realism --out docs/img [--shared-data ../shared/data]`` writes the
side-by-side figures of docs/SIMULATION.md (simulation_desi_spectrum.png, simulation_legacy_cutout.png,
simulation_ifu_maps.png). The helper functions are also used by tests/simulate/test_realism.py.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from .. import constants as C
from . import galaxy as G
from . import imaging as I
from . import spectra as S
from .templates import TemplateSet, load_templates

#: DESI effective BGS exposure time from TSNR2: EFFTIME_BGS = 0.14 x TSNR2_BGS (desispec.tsnr; DESI Collaboration
#: 2024 DR1 paper). The real redrock file of ../shared/data has TSNR2_BGS = 22105 -> 3095 s.
EFFTIME_PER_TSNR2_BGS = 0.14


def read_real_desi(path_coadd: str | Path, path_redrock: str | Path) -> dict:
    """The real coadd's first target: arm fluxes/ivars, redshift, FIBERFLUX_R and effective exposure time.

    'flux' and 'ivar' (arm -> (N_arm,)) are the flux in the fiber, as the simulator and the data builder hold it:
    the file's point-source-calibrated flux x MEAN_PSF_TO_FIBER_SPECFLUX ('psf_to_fiber') and ivar / factor^2;
    'file_flux' and 'file_ivar' are the file's values.
    """
    from astropy.io import fits  # noqa: PLC0415

    out = {"flux": {}, "ivar": {}, "file_flux": {}, "file_ivar": {}, "wavelength": {}}
    with fits.open(path_coadd) as hdul:
        factor = float(hdul["FIBERMAP"].data["MEAN_PSF_TO_FIBER_SPECFLUX"][0])
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"{path_coadd}: MEAN_PSF_TO_FIBER_SPECFLUX must be finite and > 0, got {factor}")
        for arm in S.ARMS:
            out["wavelength"][arm] = np.asarray(hdul[f"{arm.upper()}_WAVELENGTH"].data, dtype=np.float64)
            out["file_flux"][arm] = np.asarray(hdul[f"{arm.upper()}_FLUX"].data[0], dtype=np.float64)
            out["file_ivar"][arm] = np.asarray(hdul[f"{arm.upper()}_IVAR"].data[0], dtype=np.float64)
            out["flux"][arm] = out["file_flux"][arm] * factor
            out["ivar"][arm] = out["file_ivar"][arm] / factor**2
        out["psf_to_fiber"] = factor
        out["fiberflux_r"] = float(hdul["FIBERMAP"].data["FIBERFLUX_R"][0])
    with fits.open(path_redrock) as hdul:
        out["z"] = float(hdul["REDSHIFTS"].data["Z"][0])
        out["efftime_s"] = EFFTIME_PER_TSNR2_BGS * float(hdul["TSNR2"].data["TSNR2_BGS"][0])
    return out


def merged_r_band_nanomaggies(flux: dict[str, np.ndarray]) -> float:
    """DECam r flux (nanomaggies) of a b/r/z spectrum (1e-17 units), each wavelength taken from one arm."""
    waves = S.arm_wavelengths()
    pieces_w, pieces_f = [], []
    for arm, (lo, hi) in {"b": (0, 5780.0), "r": (5780.0, 7570.0), "z": (7570.0, 1e5)}.items():
        keep = (waves[arm] >= lo) & (waves[arm] < hi)
        pieces_w.append(waves[arm][keep])
        pieces_f.append(flux[arm][keep])
    wave, f = np.concatenate(pieces_w), np.concatenate(pieces_f)
    return float(G.ab_nanomaggies(wave, f * C.FLUX_UNIT_ERG_S_CM2_A, "r"))


def matched_desi_spectrum(
    templates: TemplateSet,
    z: float,
    fiberflux_r: float,
    efftime_s: float,
    seed: int = 0,
    young: float = 0.8,
    halpha_ew_rest_a: float = 40.0,
) -> dict:
    """A simulated central fiber spectrum of a star-forming galaxy at redshift ``z``, scaled to ``fiberflux_r``.

    The disk has a young light fraction ``young`` and an H-alpha equivalent width (rest, against the disk
    continuum) of ``halpha_ew_rest_a``, like the real emission-line galaxy of ../shared/data.

    Returns
    -------
    dict with 'model' (arm -> noiseless flux), 'flux', 'ivar' (arm -> noisy flux and its ivar).
    """
    if not 0 < z <= 0.7:
        raise ValueError(f"z must be in (0, 0.7], got {z}")
    rng = np.random.default_rng(seed)
    galaxy = G.sample_galaxy(rng, templates, 1, offcentre=False)
    cosmo = G.cosmology(np.array([z]))
    galaxy = dataclasses.replace(
        galaxy,
        redshift=z,
        luminosity_distance_mpc=float(cosmo["dl_mpc"][0]),
        arcsec_per_kpc=float(cosmo["arcsec_per_kpc"][0]),
        young_light_fraction=young,
        centre_east_arcsec=0.0,
        centre_north_arcsec=0.0,
        disk_scale_arcsec=0.5,
        disk_re_arcsec=0.84,
        bulge_re_arcsec=0.2,
        bulge_light_fraction=0.2,
        ebv_disk=0.05,
        ebv_gas=0.05 / C.CALZETTI_STELLAR_TO_GAS_EBV,
        agn=False,
        exptime_s=efftime_s,
    )
    disk_rest = G.component_spectra_rest(templates, galaxy, broaden=False)["disk"]
    continuum_halpha = np.interp(C.EMISSION_LINES_VACUUM_A["Halpha"], templates.wavelength_rest, disk_rest)
    # observed line flux = EW_rest x f_lambda,rest x scale; undo the dust applied in render_maps
    halpha_observed = halpha_ew_rest_a * continuum_halpha * galaxy.continuum_scale
    galaxy = dataclasses.replace(
        galaxy,
        halpha_flux_sf_intrinsic=float(
            halpha_observed / G.line_dust_transmission(galaxy.ebv_gas)[G.LINE_NAMES.index("Halpha")]
        ),
    )
    east, north = I.pixel_grid(80, 0.131)
    maps = G.render_maps(galaxy, east, north, 0.131, subsample=3)
    model = S.fiber_model(galaxy, templates, maps, east, north)["flux"]
    factor = fiberflux_r / merged_r_band_nanomaggies(model)
    model = {arm: v * factor for arm, v in model.items()}
    observed = S.observe(model, efftime_s, rng)
    return {
        "model": model,
        "flux": {a: observed[a][0].astype(np.float64) for a in S.ARMS},
        "ivar": {a: observed[a][1].astype(np.float64) for a in S.ARMS},
        "galaxy": galaxy,
    }


def normalised_residuals(flux: np.ndarray, ivar: np.ndarray, width: int = 31) -> np.ndarray:
    """(flux - running median) * sqrt(ivar): ~N(0, 1) where the ivar is honest and the spectrum smooth."""
    from scipy.ndimage import median_filter  # noqa: PLC0415

    smooth = median_filter(flux, size=width, mode="nearest")
    good = ivar > 0
    return ((flux - smooth) * np.sqrt(ivar))[good]


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def sky_pixel_noise(band_image: np.ndarray, clip_sigma: float = 3.0) -> float:
    """Per-pixel background noise of a cutout band: robust sigma (1.4826 x MAD) of the pixels left after iterative
    ``clip_sigma`` clipping of sources (astropy.stats.sigma_clip). Unlike neighbour differences, this does not
    shrink when the noise of neighbouring pixels is correlated.

    Parameters
    ----------
    band_image : (..., H, W) one band of one or more cutouts, nanomaggies.
    """
    band_image = np.asarray(band_image, dtype=np.float64)
    return robust_sigma(band_image[~_source_mask(band_image, clip_sigma)])


def _source_mask(band_image: np.ndarray, clip_sigma: float) -> np.ndarray:
    """True on pixels removed by iterative ``clip_sigma`` clipping (astropy.stats.sigma_clip): the sources."""
    from astropy.stats import sigma_clip  # noqa: PLC0415

    return sigma_clip(band_image, sigma=clip_sigma, maxiters=None).mask


def binned_noise_ratio(band_image: np.ndarray, block: int = C.NOISE_BIN_BLOCK_PIX, clip_sigma: float = 3.0) -> float:
    """Binned-noise ratio of a cutout band: robust sigma of ``block`` x ``block`` block means x ``block`` over the
    robust per-pixel sigma, on sky-only pixels ("per pixel-equivalent"; 1 for white noise).

    Sources are masked by iterative ``clip_sigma`` clipping (astropy.stats.sigma_clip); only blocks with no masked
    pixel enter the binned sigma. Robust sigma = 1.4826 x MAD.

    Parameters
    ----------
    band_image : (H, W) one band of a cutout, nanomaggies. block : bin side, pixels (default 4).
    """
    band_image = np.asarray(band_image, dtype=np.float64)
    if band_image.ndim != 2 or min(band_image.shape) < 4 * block:
        raise ValueError(f"band_image must be 2-D and at least {4 * block} pixels a side, got {band_image.shape}")
    masked = _source_mask(band_image, clip_sigma)  # (H, W) True = source
    ny, nx = (band_image.shape[0] // block) * block, (band_image.shape[1] // block) * block
    blocks = band_image[:ny, :nx].reshape(ny // block, block, nx // block, block)
    clean_blocks = ~masked[:ny, :nx].reshape(ny // block, block, nx // block, block).any(axis=(1, 3))
    return robust_sigma(blocks.mean(axis=(1, 3))[clean_blocks]) * block / robust_sigma(band_image[~masked])


def _log_halpha_ew_spread(log_ew: np.ndarray) -> float:
    return float(np.std(log_ew)) if log_ew.size > 1 else float("nan")


def halpha_ew_spread_simulated(
    maps_path: str | Path, logcube_path: str | Path, snr_min: float = 3.0, redshift: float | None = None
) -> dict:
    """Within-galaxy spread of log10 H-alpha EW of a simulated (MAPS, LOGCUBE) pair.

    Over spaxels with H-alpha S/N = EMLINE_GFLUX x sqrt(EMLINE_GFLUX_IVAR) > ``snr_min``, EW = H-alpha flux /
    continuum, continuum = median LOGCUBE flux over rest-frame 6000-6400 A in that spaxel (positive only).

    Parameters
    ----------
    maps_path, logcube_path : the simulated DAP-like MAPS file and MaNGA-like LOGCUBE of the same galaxy.
    redshift : default None reads the primary header keyword Z of the MAPS file.

    Returns
    -------
    dict with 'spread_dex' (standard deviation of log10 EW, float), 'num_spaxels' (int), 'log_ew' ((N,) log10 A).
    """
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(maps_path) as maps:
        if redshift is None:
            if "Z" not in maps[0].header:
                raise ValueError(f"{maps_path}: primary header has no Z; pass redshift=")
            redshift = float(maps[0].header["Z"])
        channel = _dap_channel(maps, "EMLINE_GFLUX", "Ha-6564", maps_path)
        flux = np.asarray(maps["EMLINE_GFLUX"].data[channel], dtype=np.float64)  # (n, n)
        ivar = np.asarray(maps["EMLINE_GFLUX_IVAR"].data[channel], dtype=np.float64)
    with fits.open(logcube_path) as cube:
        wave = np.asarray(cube["WAVE"].data, dtype=np.float64)  # (n_wave,)
        rest = wave / (1 + redshift)
        window = (rest >= 6000.0) & (rest <= 6400.0)
        if window.sum() < 5:
            raise ValueError(f"{logcube_path}: WAVE does not cover rest 6000-6400 A at z = {redshift}")
        continuum = np.median(np.asarray(cube["FLUX"].data[window], dtype=np.float64), axis=0)  # (n, n) per A
    good = (flux * np.sqrt(ivar) > snr_min) & (continuum > 0)
    log_ew = np.log10(flux[good] / continuum[good])
    return {"spread_dex": _log_halpha_ew_spread(log_ew), "num_spaxels": int(good.sum()), "log_ew": log_ew}


def halpha_ew_spread_dap(maps_path: str | Path, snr_min: float = 3.0) -> dict:
    """Within-galaxy spread of log10 H-alpha EW from a DAP MAPS file's EMLINE_GEW, over spaxels with H-alpha
    S/N = EMLINE_GFLUX x sqrt(EMLINE_GFLUX_IVAR) > ``snr_min``, unmasked and EW > 0.

    Returns
    -------
    dict with 'spread_dex', 'num_spaxels', 'log_ew' as :func:`halpha_ew_spread_simulated`.
    """
    from astropy.io import fits  # noqa: PLC0415

    with fits.open(maps_path) as maps:
        for name in ("EMLINE_GEW", "EMLINE_GFLUX", "EMLINE_GFLUX_IVAR", "EMLINE_GFLUX_MASK"):
            if name not in maps:
                raise ValueError(f"{maps_path}: no HDU {name}")
        channel = _dap_channel(maps, "EMLINE_GEW", "Ha-6564", maps_path)
        ew = np.asarray(maps["EMLINE_GEW"].data[channel], dtype=np.float64)
        flux = np.asarray(maps["EMLINE_GFLUX"].data[channel], dtype=np.float64)
        ivar = np.asarray(maps["EMLINE_GFLUX_IVAR"].data[channel], dtype=np.float64)
        mask = np.asarray(maps["EMLINE_GFLUX_MASK"].data[channel])
    good = (flux * np.sqrt(ivar) > snr_min) & (mask == 0) & (ew > 0)
    log_ew = np.log10(ew[good])
    return {"spread_dex": _log_halpha_ew_spread(log_ew), "num_spaxels": int(good.sum()), "log_ew": log_ew}


def _dap_channel(hdul, hdu_name: str, name: str, path) -> int:
    """Index of channel ``name`` in a DAP MAPS HDU, from its C01..Cnn header keywords (the readers' parser)."""
    from ..io._fits import _channel_names  # noqa: PLC0415

    names = _channel_names(hdul[hdu_name].header, hdul[hdu_name].data.shape[0], Path(path), hdu_name)
    if name not in names:
        raise ValueError(f"{path}: HDU {hdu_name} has no channel {name!r}; channels: {list(names)}")
    return names.index(name)


def population_continuum_colours(
    templates: TemplateSet, z_range=(0.3, 0.45), n_draw: int = 400, seed: int = 0, r_mag_limit: float = 19.5
):
    """Ratio median(b-arm flux) / median(z-arm flux) of whole-galaxy continua of simulated galaxies in ``z_range``
    selected at r < ``r_mag_limit``."""
    rng = np.random.default_rng(seed)
    waves = S.arm_wavelengths()
    ratios = []
    for i in range(n_draw):
        galaxy = G.sample_galaxy(rng, templates, i, r_mag_limit=r_mag_limit)
        if not z_range[0] <= galaxy.redshift <= z_range[1]:
            continue
        spectra = G.component_spectra_rest(templates, galaxy, broaden=False)
        wave_obs = templates.wavelength_rest * (1 + galaxy.redshift)
        total = spectra["bulge"] + spectra["disk"]
        ratios.append(
            np.median(np.interp(waves["b"], wave_obs, total)) / np.median(np.interp(waves["z"], wave_obs, total))
        )
    return np.array(ratios)


def simulated_cutouts(templates: TemplateSet, n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, 3, size, size) simulated Legacy cutouts (nanomaggies)."""
    from .survey import simulate_galaxy  # noqa: PLC0415

    return np.stack([simulate_galaxy(i, seed, templates, cutout_size=size).image for i in range(n)])


def _rgb(image: np.ndarray, scale: float = 0.02) -> np.ndarray:
    """Lupton-like asinh RGB of a (3, H, W) g, r, z image (z -> red, r -> green, g -> blue)."""
    rgb = np.stack([image[2], image[1], image[0]], axis=-1)
    return np.clip(np.arcsinh(rgb / scale) / np.arcsinh(1.0 / scale) * 2.5, 0, 1)


def make_figures(out_dir: str | Path, shared_data: str | Path, templates: TemplateSet | None = None) -> list[Path]:
    """Write the realism figures into ``out_dir``; returns their paths."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from astropy.io import fits  # noqa: PLC0415

    templates = templates or load_templates()
    out_dir, shared_data = Path(out_dir), Path(shared_data)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    real = read_real_desi(
        shared_data / "desi" / "coadd-4-80613-thru20210324.fits",
        shared_data / "desi" / "redrock-4-80613-thru20210324.fits",
    )
    sim = matched_desi_spectrum(templates, real["z"], real["fiberflux_r"], real["efftime_s"])
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    colours = {"b": "tab:blue", "r": "tab:red", "z": "tab:brown"}
    for arm in S.ARMS:
        wave = S.arm_wavelengths()[arm]
        axes[0].plot(wave, real["flux"][arm], lw=0.4, color=colours[arm])
        axes[1].plot(wave, sim["flux"][arm], lw=0.4, color=colours[arm])
        axes[2].plot(wave, real["flux"][arm] * np.sqrt(real["ivar"][arm]), lw=0.4, color="k", alpha=0.6)
        axes[2].plot(wave, sim["flux"][arm] * np.sqrt(sim["ivar"][arm]), lw=0.4, color=colours[arm], alpha=0.6)
    axes[0].set_title(f"real DESI coadd, TARGETID 39633345008634465, z = {real['z']:.4f}")
    axes[1].set_title(
        "simulated central fiber: star-forming disk + bulge at the same z, FIBERFLUX_R and "
        f"EFFTIME ({real['efftime_s']:.0f} s)"
    )
    axes[2].set_title("per-pixel S/N: real (black) and simulated (colour)")
    for ax in axes[:2]:
        ax.set_ylim(-2, 6)
        ax.set_ylabel("flux [1e-17 erg/s/cm2/A]")
    axes[2].set_ylabel("S/N")
    axes[2].set_xlabel("observed vacuum wavelength [A]")
    fig.tight_layout()
    path = out_dir / "simulation_desi_spectrum.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    real_cutout = fits.getdata(shared_data / "legacysurvey" / "legacysurvey-dr9-grz-357.9087-54.8817.fits").astype(
        np.float64
    )
    cutouts = simulated_cutouts(templates, 6, 96)
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    axes[0, 0].imshow(_rgb(real_cutout[:, 80:176, 80:176]), origin="lower")
    axes[0, 0].set_title("real DR9 cutout (central 96 px)")
    for k, ax in enumerate([axes[0, 1], axes[0, 2], axes[0, 3], axes[1, 1], axes[1, 2], axes[1, 3]]):
        ax.imshow(_rgb(cutouts[k]), origin="lower")
        ax.set_title(f"simulated #{k}")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[1, 0]
    bins = np.linspace(-0.02, 0.02, 81)
    for i, band in enumerate("grz"):
        ax.hist(real_cutout[i].ravel(), bins, histtype="step", color=f"C{i}", label=f"real {band}", density=True)
        ax.hist(
            cutouts[:, i].ravel(), bins, histtype="step", ls="--", color=f"C{i}", label=f"sim {band}", density=True
        )
    ax.set_yscale("log")
    ax.set_xticks([-0.02, 0, 0.02])
    ax.set_title("pixel values [nmgy]")
    ax.legend(fontsize=6)
    fig.tight_layout()
    path = out_dir / "simulation_legacy_cutout.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    from .ifu import simulate_cube  # noqa: PLC0415

    rng = np.random.default_rng(4)
    galaxy = G.sample_galaxy(rng, templates, 1, offcentre=False)
    galaxy = dataclasses.replace(
        galaxy, disk_scale_arcsec=2.0, disk_re_arcsec=3.36, rotation_turnover_arcsec=1.0, inclination_deg=55.0,
        disk_axis_ratio=0.6, halpha_flux_sf_intrinsic=max(galaxy.halpha_flux_sf_intrinsic, 300.0), redshift=0.04,
    )  # fmt: skip
    cube = simulate_cube(galaxy, templates, 32, np.random.default_rng(5))
    halpha = G.LINE_NAMES.index("Halpha")
    nii = G.LINE_NAMES.index("NII_6585")
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    extent = [8, -8, -8, 8]
    im = axes[0].imshow(np.log10(np.maximum(cube["line_flux"][halpha], 1e-3)), origin="lower", extent=extent)
    axes[0].set_title("true H-alpha flux (log, 1e-17/spaxel)", fontsize=9)
    fig.colorbar(im, ax=axes[0])
    im = axes[1].imshow(cube["line_velocity"][halpha], origin="lower", cmap="RdBu_r", extent=extent)
    axes[1].set_title("true H-alpha velocity (km/s)", fontsize=9)
    fig.colorbar(im, ax=axes[1])
    ratio = np.log10(np.maximum(cube["line_flux"][nii], 1e-6) / np.maximum(cube["line_flux"][halpha], 1e-6))
    im = axes[2].imshow(ratio, origin="lower", cmap="viridis", extent=extent)
    axes[2].set_title("log [NII]6584 / H-alpha", fontsize=9)
    fig.colorbar(im, ax=axes[2])
    wave = cube["wavelength"]
    pa = np.radians(galaxy.position_angle_deg)
    # spaxel 3 arcsec along the receding major axis (columns grow to the west, rows to the north)
    col, row = int(round(15.5 - 6 * np.sin(pa))), int(round(15.5 + 6 * np.cos(pa)))
    axes[3].plot(wave, cube["flux"][:, 16, 16], lw=0.5, label="centre spaxel")
    axes[3].plot(wave, cube["flux"][:, row, col], lw=0.5, label="3 arcsec along the receding major axis")
    axes[3].set_xlim(6650, 7000)
    axes[3].legend(fontsize=7)
    axes[3].set_title("LOGCUBE spectra near H-alpha", fontsize=9)
    for ax in axes[:3]:
        ax.set_xlabel("east [arcsec]")
    fig.tight_layout()
    path = out_dir / "simulation_ifu_maps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the synthetic-vs-real realism figures of docs/SIMULATION.md.")
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--templates", default=None, help="'kcorrect' (default) or an SSP FITS file")
    args = parser.parse_args(argv)
    if not args.shared_data.is_dir():
        parser.error(f"--shared-data {args.shared_data} is not a folder")
    for path in make_figures(args.out, args.shared_data, load_templates(args.templates)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
