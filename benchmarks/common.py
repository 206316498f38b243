"""Shared bits of the benchmark scripts: run provenance and result files."""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def provenance(device: torch.device | str = "cpu") -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent).stdout.strip()
        commit += "+uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    device = torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return {"command": "python " + " ".join(sys.argv), "commit": commit, "device": name,
            "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def checkpoint_step(model) -> int | None:
    """The training step a score model's checkpoint was saved at (None for one without a training record)."""
    return model.config.get("training", {}).get("step")


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive lock on `path` (created if missing) for a read-merge-write of a results file
    that several benchmark runs may update at once."""
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def merge_records(path: Path, rows: list, key) -> tuple[list, dict | None]:
    """For a run that redoes part of a results file: the records of `path` whose key(record) no row of `rows`
    has, followed by `rows`, and that file's provenance; (`rows`, None) when there is no file yet."""
    path = Path(path)
    if not path.exists():
        return rows, None
    old = json.loads(path.read_text())
    redone = {key(r) for r in rows}
    return [r for r in old["records"] if key(r) not in redone] + rows, old["provenance"]


def write_results(stem: str, records: list, markdown_table: str, device="cpu", out_dir: Path = RESULTS,
                  prov: dict | None = None) -> tuple[Path, Path]:
    """Write <stem>.json ({"provenance", "records"}) and <stem>.md (provenance + table); prov: the
    provenance() the caller already took (default: taken here)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prov = prov or provenance(device)
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps({"provenance": prov, "records": records}, indent=2))
    head = "\n".join(f"- {k}: `{v}`" for k, v in prov.items())
    mpath.write_text(f"# {stem}\n\n{head}\n\n{markdown_table}\n")
    return jpath, mpath


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def tune_fista_c(op, x_val: torch.Tensor, cs, n_iter: int = 300) -> tuple[float, float, list]:
    """FISTA-TV's weight lam = c ||A||^2 (box [0, 1]) grid-searched over `cs` on validation images x_val
    (N, C, H, W) measured noise-free by `op`: (best c, ||A||^2 with its 1.05 margin, the table of
    sgm_inverse.baselines.tune_fista_lambda). c, unlike lam, transfers across image sizes."""
    from sgm_inverse.baselines import power_method, tune_fista_lambda
    lip = 1.05 * power_method(op, tuple(x_val.shape[1:]))
    best, table = tune_fista_lambda(op, x_val, op(x_val), [c * lip for c in cs], n_iter=n_iter,
                                    fista_options={"lipschitz": lip, "box": (0.0, 1.0)})
    return cs[[row["lam"] for row in table].index(best)], lip, table


def tuned_fista_tv(op, x_val: torch.Tensor, y: torch.Tensor, cs, n_iter: int = 300) -> tuple[float, torch.Tensor]:
    """(c, FISTA-TV reconstruction of y) with lam = c ||A||^2 as `tune_fista_c` chose c on x_val (box [0, 1],
    n_iter iterations in both): the validation-tuned baseline the benchmarks compare against and warm-start from."""
    from sgm_inverse.baselines import fista_tv
    c, lip, _ = tune_fista_c(op, x_val, cs, n_iter=n_iter)
    return c, fista_tv(op, y, c * lip, n_iter=n_iter, lipschitz=lip, box=(0.0, 1.0))
