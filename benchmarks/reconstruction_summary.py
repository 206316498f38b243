"""Merge CT / MRI benchmark runs into one table and check the goals of the benchmarks issue.

    python benchmarks/reconstruction_summary.py RUN.json [RUN.json ...] [-o benchmarks/results/reconstruction.md]

Each RUN.json is the output of ct_sparse_view.py or mri_undersampled.py (for example a main run with
projection and a second one, written with --out elsewhere, with dps on fewer settings). Rows are keyed
by (task, dataset, setting, method, variant); a key seen twice must agree on the test images, else it is an error.
The goals compare the best score-based method of a setting against validation-tuned FISTA-TV on the
same test images; a goal whose settings were not run is reported as "not run", never as met.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, markdown_table

SCORE = ("projection", "dps")
BASELINES = ("fbp", "zero_filled", "fista_tv")


def variant(r: dict) -> str:
    """What tells two rows of one method apart: the projection's exact cg fit of noisy data (runs from
    before the noise-aware step, whose records carry no noise_aware) against the damped step."""
    noisy_cg = r["method"] == "projection" and r.get("consistency") == "cg" and r["noise_std"] > 0
    return "exact fit" if noisy_cg and not r.get("noise_aware") else ""


def load(paths) -> tuple[dict, list]:
    rows, sources = {}, []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        sources.append((str(path), doc["provenance"]))
        for r in doc["records"]:
            # a score method run with other steps / samples is another row (its cost differs), not a repeat
            budget = (r.get("steps"), r.get("n_samples")) if r["method"] in SCORE else None
            key = (r["task"], r["dataset"], r["setting"], r["method"], variant(r), budget)
            if key in rows:
                if rows[key]["test_indices"] != r["test_indices"]:
                    raise SystemExit(f"{key} appears in two runs with different test images")
                continue  # the same baseline on the same images: keep the first
            rows[key] = {**r, "source": str(path)}
    return rows, sources


def matching(rows, task, dataset, methods, **fields) -> list:
    """Rows of this task / data set / method set whose record fields equal `fields` (noiseless unless given)."""
    fields.setdefault("noise_std", 0.0)
    return [r for k, r in rows.items() if k[:2] == (task, dataset) and k[3] in methods
            and all(r.get(f) == v for f, v in fields.items())]


def compare(rows, task, dataset, setting: dict, fista_setting: dict | None = None):
    """(ours, fista, dPSNR, dSSIM) or None when either side was not run; settings are record fields."""
    ours = matching(rows, task, dataset, SCORE, **setting)
    fista = matching(rows, task, dataset, ("fista_tv",), **(fista_setting or setting))
    if not ours or len(fista) != 1:
        return None
    best = max(ours, key=lambda r: r["psnr_mean"])
    return best, fista[0], best["psnr_mean"] - fista[0]["psnr_mean"], best["ssim_mean"] - fista[0]["ssim_mean"]


def goals(rows) -> list[dict]:
    """The goals of the benchmarks issue, each with the measured numbers and met / missed / not run."""
    ct = lambda views: {"geometry": "parallel", "views": views}  # noqa: E731
    mri = lambda acc: {"mask": "equispaced", "acceleration": acc}  # noqa: E731
    spec = [  # (label, task, dataset, setting, fista setting, min dPSNR, min dSSIM)
        ("brain CT 6 views: >= +3 dB, >= +0.03 SSIM", "ct", "brain", ct(6), None, 3.0, 0.03),
        ("brain CT 8 views: >= +3 dB, >= +0.03 SSIM", "ct", "brain", ct(8), None, 3.0, 0.03),
        ("brain MRI 4x: >= +3 dB, >= +0.03 SSIM", "mri", "brain", mri(4.0), None, 3.0, 0.03),
        ("brain MRI 8x: >= +3 dB, >= +0.05 SSIM", "mri", "brain", mri(8.0), None, 3.0, 0.05),
        ("brain CT 23 views: not worse (>= 0 dB)", "ct", "brain", ct(23), None, 0.0, None),
        ("ellipses CT 4 views: beats FISTA-TV (> 0 dB)", "ct", "ellipses", ct(4), None, 1e-9, None),
        ("ellipses CT 8 views: beats FISTA-TV (> 0 dB)", "ct", "ellipses", ct(8), None, 1e-9, None),
        ("brain CT: ours at 4 views >= FISTA-TV at 8 views", "ct", "brain", ct(4), ct(8), 0.0, None),
    ]
    out = []
    for label, task, dataset, setting, fista_setting, dp, ds in spec:
        c = compare(rows, task, dataset, setting, fista_setting)
        if c is None:
            out.append({"goal": label, "ours": "not run", "FISTA-TV": "", "dPSNR": "", "dSSIM": "", "verdict": "not run"})
            continue
        ours, fista, d_psnr, d_ssim = c
        met = d_psnr >= dp and (ds is None or d_ssim >= ds)
        out.append({"goal": label, "ours": f"{ours['method']} {ours['psnr_mean']:.2f} / {ours['ssim_mean']:.3f}",
                    "FISTA-TV": f"{fista['psnr_mean']:.2f} / {fista['ssim_mean']:.3f}",
                    "dPSNR": f"{d_psnr:+.2f}", "dSSIM": f"{d_ssim:+.3f}", "verdict": "met" if met else "MISSED"})
    return out


def table(rows) -> list[dict]:
    order = {m: i for i, m in enumerate(BASELINES + SCORE)}
    keys = sorted(rows, key=lambda k: (k[0], k[1], rows[k].get("geometry", rows[k].get("mask", "")),
                                       rows[k].get("views", rows[k].get("acceleration", 0)),
                                       rows[k]["noise_std"], order.get(k[3], 99), k[5] or ()))
    out = []
    for k in keys:
        r = rows[k]
        what = (f"{r['geometry']} {r['views']} views" if r["task"] == "ct"
                else f"{r['mask']} {r['acceleration']:g}x")
        steps = f"{r['steps']} x{r['n_samples']}" if r["method"] in SCORE else ""
        out.append({"task": r["task"], "dataset": r["dataset"], "setting": what, "noise": f"{100 * r['noise_std']:g}%",
                    "method": r["method"] + (f" ({k[4]})" if k[4] else ""), "PSNR (dB)": f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}",
                    "SSIM": f"{r['ssim_mean']:.3f} ± {r['ssim_std']:.3f}", "steps x samples": steps,
                    "s / image": f"{r['seconds_per_image']:.3g}", "n": r["n_images"]})
    return out


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "reconstruction.md")
    args = ap.parse_args(argv)
    rows, sources = load(args.runs)
    cols = ["task", "dataset", "setting", "noise", "method", "PSNR (dB)", "SSIM", "steps x samples", "s / image", "n"]
    src = "\n".join(f"- `{p}`: `{prov['command']}` (commit `{prov['commit']}`, {prov['device']}, {prov['date']})"
                    for p, prov in sources)
    text = (f"# Sparse-view CT and undersampled MRI: all runs\n\n{src}\n\n{markdown_table(table(rows), cols)}\n\n"
            f"## Goals (best score-based method against validation-tuned FISTA-TV, same test images)\n\n"
            f"{markdown_table(goals(rows), ['goal', 'ours', 'FISTA-TV', 'dPSNR', 'dSSIM', 'verdict'])}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return args.out


if __name__ == "__main__":
    main()
