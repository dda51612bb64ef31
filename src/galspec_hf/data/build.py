"""Build a DESI + Legacy Surveys data set from a folder of survey files: the code behind
``galspec build-dataset`` and ``data_scripts/build_desi_dataset.py``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import datasets

from .desi_builder import DesiGalaxies, read_build_report

__all__ = ["build_desi_dataset", "report_path_for", "summarize_report"]


def report_path_for(output_dir: str | Path) -> Path:
    """The JSON report written next to ``output_dir``: ``<output_dir>.report.json``."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".report.json")


def build_desi_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    file_format: str = "arrow",
    num_proc: int | None = None,
    push_to_hub: str | None = None,
    cache_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **config_kwargs,
) -> dict:
    """Turn a folder of DESI coadd/redrock files and Legacy Surveys cutouts into a data set.

    Parameters
    ----------
    input_dir : str or Path
        Folder searched recursively (see :class:`~galspec_hf.data.DesiGalaxies`).
    output_dir : str or Path
        ``file_format="arrow"``: a ``Dataset.save_to_disk`` folder (load with ``datasets.load_from_disk``).
        ``file_format="parquet"``: Parquet shards ``desi_galaxies-train-XXXXX-of-NNNNN.parquet``.
    num_proc : int, optional
        Worker processes; preparation is split by input coadd files.
    push_to_hub : str, optional
        Hub repository id ("org/name"): the prepared data set is pushed there as Parquet shards
        with ``Dataset.push_to_hub`` (needs network access and a token).
    cache_dir : str or Path, optional
        Cache of the Arrow preparation (default: a temporary folder, removed afterwards).
    overwrite : bool
        Replace a non-empty ``output_dir``.
    **config_kwargs
        :class:`~galspec_hf.data.DesiGalaxiesConfig` fields: ``image_size``, ``bands``, cuts...

    Returns
    -------
    dict
        The build report (see :func:`~galspec_hf.data.read_build_report`) plus ``output_dir``,
        ``format``, ``num_rows`` and ``report_path``; the report is also written to
        :func:`report_path_for` (``output_dir``).
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if file_format not in ("arrow", "parquet"):
        raise ValueError(f"file_format must be 'arrow' or 'parquet', got {file_format!r}")
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"output folder {output_dir} exists and is not empty (use overwrite)")
        shutil.rmtree(output_dir)
    if progress:
        datasets.enable_progress_bars()
    else:
        datasets.disable_progress_bars()

    temporary = None
    if cache_dir is None:
        temporary = tempfile.mkdtemp(prefix="galspec-build-")
        cache_dir = temporary
    try:
        builder = DesiGalaxies(data_dir=input_dir, cache_dir=str(cache_dir), **config_kwargs)
        if file_format == "parquet":
            builder.download_and_prepare(str(output_dir), file_format="parquet", num_proc=num_proc)
            report = read_build_report(output_dir)
            num_rows = builder.info.splits["train"].num_examples
            dataset = None
            if push_to_hub:
                dataset = datasets.load_dataset(
                    "parquet", data_files=str(output_dir / "*.parquet"), split="train", cache_dir=str(cache_dir)
                )
        else:
            builder.download_and_prepare(num_proc=num_proc)
            report = read_build_report(builder.cache_dir)
            dataset = builder.as_dataset(split="train")
            dataset.save_to_disk(str(output_dir))
            num_rows = dataset.num_rows
        if push_to_hub:
            dataset.push_to_hub(push_to_hub)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)

    report = {"output_dir": str(output_dir), "format": file_format, "num_rows": num_rows, **report}
    report_path = report_path_for(output_dir)
    report["report_path"] = str(report_path)
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return report


def summarize_report(report: dict, max_reasons: int = 8) -> str:
    """A few console lines: rows written, files read, skips by kind and the commonest reasons."""
    lines = [
        f"wrote {report['num_rows']} rows ({report['format']}) to {report['output_dir']}",
        f"read {report['n_spectra_read']} spectra from {report['n_coadd_files']} coadd files; "
        f"skipped {report['n_skipped']} files/records",
    ]
    for kind, count in report["skipped_by_kind"].items():
        lines.append(f"  {kind}: {count}")
    for reason, count in list(report["skipped_by_reason"].items())[:max_reasons]:
        lines.append(f"    {count} x {reason}")
    lines.append(f"report: {report['report_path']}")
    return "\n".join(lines)
