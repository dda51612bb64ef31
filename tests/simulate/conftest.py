"""Fixtures shared by the simulator tests: the stellar population templates."""

from __future__ import annotations

import pytest

from galspec_hf.simulate.templates import kcorrect_template_path, load_templates


@pytest.fixture(scope="session")
def template_source(request):
    """None (kcorrect's shipped templates, the default) when installed, else the real SSP file's path."""
    if kcorrect_template_path() is not None:
        return None
    shared_file = request.getfixturevalue("shared_file")
    return str(shared_file("templates/SSP_Padova_CKC14z_Kroupa_Z0.0190.fits"))


@pytest.fixture(scope="session")
def templates(template_source):
    return load_templates(template_source)
