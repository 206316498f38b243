"""The figure of a reconstruction benchmark: test images by rows; ground truth, baseline, FISTA-TV, ours
(posterior mean), posterior std and |error| by columns; the run's provenance in the title and in the
PNG's text chunks."""
from __future__ import annotations

import sys
from pathlib import Path

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse.plotting import save_panels  # noqa: E402

from common import provenance  # noqa: E402
from recon_methods import clamp01  # noqa: E402
from recon_task import SCORE_METHODS  # noqa: E402


def _png_provenance(path: Path, prov: dict, extra: dict) -> None:
    """Write the provenance into the PNG's text chunks (readable with PIL: Image.open(p).text)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for k, v in {**prov, **extra}.items():
        info.add_text(str(k), str(v))
    with Image.open(path) as im:
        im.load()
        im.save(path, pnginfo=info)


def save_figure(task, args, dataset, x_test, setting, outputs) -> Path:
    """Rows: test images; columns: truth, baseline, FISTA-TV, ours (mean), std, |error|."""
    rows = min(args.figure_rows, x_test.shape[0])
    cols = {"ground truth": x_test}
    if task.baseline in outputs:
        cols[{"fbp": "FBP", "zero_filled": "zero-filled"}[task.baseline]] = clamp01(outputs[task.baseline]["recon"])
    if "fista_tv" in outputs:
        cols["FISTA-TV"] = clamp01(outputs["fista_tv"]["recon"])
    ours = next((m for m in SCORE_METHODS if m in outputs), None)
    if ours:
        mean = clamp01(outputs[ours]["recon"])
        cols[f"ours ({ours}, mean)"] = mean
        cols["std (posterior)"] = outputs[ours]["std"]
        cols["|error| (ours)"] = (mean - x_test).abs()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.name}_{dataset}.png"
    prov = provenance(args.device)
    title = (f"{dataset}, {setting.key}, test split | commit {prov['commit'][:12]} | {prov['device']} | "
             f"{prov['date']}\n{prov['command']}")
    save_panels(cols, path, rows=rows, title=title)
    _png_provenance(path, prov, {"setting": setting.key, "dataset": dataset,
                                 "columns": ", ".join(cols), "split": "test"})
    return path
