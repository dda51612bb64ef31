"""data_scripts/fetch_*.py: manifests (--dry-run) and the resumable, size-checked downloader.

Nothing here reaches the real archives: downloads go to a tiny HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galspec_hf.data import GalSpecFormatError
from galspec_hf.data.fetch import (
    DownloadError,
    ManifestEntry,
    desi_dr1_manifest,
    download_file,
    download_manifest,
    legacy_cutout_manifest,
    read_target_list,
)

REPO = Path(__file__).resolve().parents[2]
TARGETS_CSV = """TARGETID,SURVEY,PROGRAM,HEALPIX,RA,DEC
39633345008634465,main,dark,10032,150.1,2.2
39633345008634466,main,dark,10032,150.2,2.3
39633345008634467,sv3,bright,5,10.0,-5.5
"""
DR1 = "https://data.desi.lbl.gov/public/dr1/spectro/redux/iron/healpix"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "data_scripts" / name), *args], capture_output=True, text=True, timeout=120
    )


def test_desi_dry_run_prints_one_coadd_and_redrock_per_healpix(tmp_path):
    (tmp_path / "t.csv").write_text(TARGETS_CSV)
    result = run_script(
        "fetch_desi_dr1.py", "--targets", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"), "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    expected = []
    for folder, suffix in (("main/dark/100/10032", "main-dark-10032"), ("sv3/bright/0/5", "sv3-bright-5")):
        for kind in ("coadd", "redrock"):
            expected.append([kind, f"{DR1}/{folder}/{kind}-{suffix}.fits", f"{folder}/{kind}-{suffix}.fits"])
    assert lines == expected
    assert not (tmp_path / "o").exists()  # a dry run downloads nothing


def test_legacy_dry_run_prints_cutout_service_urls(tmp_path):
    (tmp_path / "t.csv").write_text(TARGETS_CSV)
    result = run_script("fetch_legacy_cutouts.py", "--targets", str(tmp_path / "t.csv"), "--size", "96", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [line[2] for line in lines] == [f"cutouts/cutout-3963334500863446{i}.fits" for i in (5, 6, 7)]
    url = urllib.parse.urlsplit(lines[2][1])
    assert f"{url.scheme}://{url.netloc}{url.path}" == "https://www.legacysurvey.org/viewer/fits-cutout"
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query == {
        "ra": "10.000000",
        "dec": "-5.500000",
        "layer": "ls-dr10",
        "pixscale": "0.262",
        "bands": "grz",
        "size": "96",
    }


def test_fits_target_list_and_missing_columns(tmp_path):
    Table({"TARGETID": [1, 2], "RA": [1.0, 2.0], "DEC": [3.0, 4.0]}).write(tmp_path / "t.fits")
    entries = legacy_cutout_manifest(read_target_list(tmp_path / "t.fits"))
    assert [e.path for e in entries] == ["cutouts/cutout-1.fits", "cutouts/cutout-2.fits"]
    no_id = legacy_cutout_manifest(Table({"ra": [1.5], "dec": [-3.25]}))
    assert no_id[0].path == "cutouts/legacysurvey-1.50000-3.25000.fits"
    no_healpix = Table({"SURVEY": ["main"], "PROGRAM": ["dark"], "RA": [1.0]})
    with pytest.raises(GalSpecFormatError, match="t.fits: missing column HEALPIX"):
        desi_dr1_manifest(no_healpix, source="t.fits")
    with pytest.raises(GalSpecFormatError, match="HEALPIX: 50000 outside"):
        desi_dr1_manifest(Table({"SURVEY": ["main"], "PROGRAM": ["dark"], "HEALPIX": [50000]}))
    (tmp_path / "bad.csv").write_text("TARGETID,SURVEY\n1,main\n")
    result = run_script("fetch_desi_dr1.py", "--targets", str(tmp_path / "bad.csv"), "--dry-run")
    assert result.returncode == 2
    assert "bad.csv: missing column PROGRAM" in result.stderr


# ----------------------------------------------------------------------------------------
# Resume and size checks against a local server
# ----------------------------------------------------------------------------------------
PAYLOAD = np.random.default_rng(0).bytes(200_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD; /ranged honours Range, /norange ignores it, /short announces more bytes than it sends."""

    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server naming)
        range_header = self.headers.get("Range")
        type(self).requests.append((self.path, range_header))
        body, start = PAYLOAD, 0
        if self.path == "/ranged" and range_header:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        self.wfile.write(chunk[: len(chunk) // 2] if self.path == "/short" else chunk)


@pytest.fixture
def server():
    _Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    destination = tmp_path / "coadd.fits"
    (tmp_path / "coadd.fits.part").write_bytes(PAYLOAD[:70_000])
    path, fetched = download_file(f"{server}/ranged", destination, expected_size=len(PAYLOAD))
    assert fetched and path.read_bytes() == PAYLOAD
    assert _Handler.requests == [("/ranged", "bytes=70000-")]
    assert not (tmp_path / "coadd.fits.part").exists()
    # complete file: nothing fetched
    assert download_file(f"{server}/ranged", destination, expected_size=len(PAYLOAD)) == (destination, False)
    assert len(_Handler.requests) == 1


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    (tmp_path / "x.fits.part").write_bytes(b"stale bytes")
    path, _ = download_file(f"{server}/norange", tmp_path / "x.fits")
    assert path.read_bytes() == PAYLOAD


def test_download_size_mismatch_keeps_the_partial_file(server, tmp_path):
    with pytest.raises(DownloadError, match="manifest size is 123"):
        download_file(f"{server}/ranged", tmp_path / "y.fits", expected_size=123)
    assert (tmp_path / "y.fits.part").stat().st_size == len(PAYLOAD)
    assert not (tmp_path / "y.fits").exists()
    with pytest.raises(DownloadError):
        download_file(f"{server}/short", tmp_path / "z.fits")
    assert not (tmp_path / "z.fits").exists()


def test_download_manifest_counts_and_collects_failures(server, tmp_path):
    entries = [
        ManifestEntry(f"{server}/ranged", "a/one.fits", "coadd"),
        ManifestEntry(f"{server}/ranged", "a/two.fits", "redrock", expected_size=5),
    ]
    summary = download_manifest(entries, tmp_path, retries=2)
    assert summary["downloaded"] == 1 and (tmp_path / "a" / "one.fits").read_bytes() == PAYLOAD
    assert [f["path"] for f in summary["failed"]] == ["a/two.fits"]
    again = download_manifest(entries[:1], tmp_path)
    assert again == {"downloaded": 0, "already_present": 1, "failed": []}
