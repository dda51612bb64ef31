"""The off-centre fraction of the synthetic survey (issue 16 item 3): a documented, configurable number.

``offcentre_fraction`` is the fraction of ALL targets that are off-centre pieces of large galaxies; only galaxies
with disk R_e > constants.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC can be pieces (galaxy.offcentre_draw_probability).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from galspec_hf import constants as C
from galspec_hf.simulate import galaxy as G
from galspec_hf.simulate.survey import simulate_survey, targetid_for

N_DRAWS = 600


def _draws(templates, offcentre_fraction, n=N_DRAWS, seed=0):
    """Galaxies 0..n-1 of survey ``seed`` drawn as simulate_galaxy draws them."""
    return [
        G.sample_galaxy(
            np.random.default_rng([seed, i]), templates, targetid_for(seed, i), offcentre_fraction=offcentre_fraction
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def default_draws(templates):
    """Galaxies drawn with the default fraction."""
    return _draws(templates, None)


def _within_binomial(realised: float, expected: float, n: int, n_sigma: float = 4.0) -> bool:
    return abs(realised - expected) <= n_sigma * math.sqrt(expected * (1 - expected) / n)


def test_default_fraction_is_the_documented_constant_and_is_realised(default_draws):
    assert G.check_offcentre_fraction(None) == C.SIMULATED_OFFCENTRE_FRACTION
    # the default keeps the simulator's earlier behaviour: 12% of the eligible galaxies
    assert G.offcentre_draw_probability(None) == 0.12
    realised = np.mean([g.offcentre_target for g in default_draws])
    assert _within_binomial(realised, C.SIMULATED_OFFCENTRE_FRACTION, len(default_draws))
    eligible = np.mean([g.disk_re_arcsec > C.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC for g in default_draws])
    assert _within_binomial(eligible, C.SIMULATED_OFFCENTRE_ELIGIBLE_FRACTION, len(default_draws))


def test_zero_fraction_gives_no_offcentre_target(templates):
    draws = _draws(templates, 0.0)
    assert not any(g.offcentre_target for g in draws)
    assert all(g.centre_east_arcsec == 0.0 and g.centre_north_arcsec == 0.0 for g in draws)


def test_large_fraction_is_realised_among_all_targets(templates):
    fraction = 0.3
    draws = _draws(templates, fraction)
    offcentre = np.array([g.offcentre_target for g in draws])
    assert _within_binomial(offcentre.mean(), fraction, len(draws))
    # only large galaxies are pieces, and pieces are away from the fiber
    assert all(g.disk_re_arcsec > C.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC for g in np.array(draws)[offcentre])
    for g in np.array(draws)[offcentre]:  # 0.5-2 R_e along a direction of the (projected) disk
        assert math.hypot(g.centre_east_arcsec, g.centre_north_arcsec) >= 0.5 * g.disk_re_arcsec * g.disk_axis_ratio


def test_fraction_above_the_eligible_share_makes_every_large_galaxy_a_piece(templates):
    assert G.offcentre_draw_probability(1.0) == 1.0
    draws = _draws(templates, 1.0, n=200)
    assert all(g.offcentre_target == (g.disk_re_arcsec > C.SIMULATED_OFFCENTRE_MIN_RE_ARCSEC) for g in draws)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_fraction_raises_a_value_error_naming_it(templates, tmp_path, bad):
    with pytest.raises(ValueError, match="offcentre_fraction"):
        G.sample_galaxy(np.random.default_rng(0), templates, 1, offcentre_fraction=bad)
    with pytest.raises(ValueError, match="offcentre_fraction"):
        simulate_survey(tmp_path, n_galaxies=1, offcentre_fraction=bad, progress=False)
    assert not (tmp_path / "truth.parquet").exists()


def test_survey_records_the_fraction_in_the_truth_metadata(tmp_path, template_source):
    import pyarrow.parquet as pq

    kwargs = dict(n_galaxies=1, templates=template_source, cutout_size=32, progress=False)
    written = simulate_survey(tmp_path / "a", offcentre_fraction=0.25, **kwargs)
    table = pq.read_table(written["truth"])
    assert "offcentre_target" in table.column_names
    assert float(table.schema.metadata[b"galspec:offcentre_fraction"]) == 0.25
    written = simulate_survey(tmp_path / "b", **kwargs)
    metadata = pq.read_table(written["truth"]).schema.metadata
    assert float(metadata[b"galspec:offcentre_fraction"]) == C.SIMULATED_OFFCENTRE_FRACTION
    with pytest.warns(UserWarning, match="offcentre_fraction 0.9"):
        simulate_survey(tmp_path / "c", offcentre_fraction=0.9, **kwargs)


@pytest.mark.parametrize("bad", ["-0.1", "1.5"])
def test_cli_refuses_a_fraction_outside_0_1_in_one_line(tmp_path, capsys, monkeypatch, bad):
    from galspec_hf.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("the survey was simulated although the input was refused")

    monkeypatch.setattr("galspec_hf.simulate.simulate_survey", must_not_run)
    out = tmp_path / "s"
    code = main(["simulate", "--n-galaxies", "2", "--out", str(out), "--offcentre-fraction", bad])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert err.startswith("galspec simulate: error: "), err
    assert f"--offcentre-fraction must be between 0 and 1, got {float(bad)}" in err
    assert not (out / "truth.parquet").exists()
