"""Ship a trained EMA checkpoint as a reference checkpoint of the library.

    python data_scripts/ship_checkpoint.py brain64 training_state/brain64/ema

Loads `<source>` (model.safetensors + config.json, as `sgm-inverse train` writes it) with the public
loader first, so a broken or incomplete checkpoint is never shipped; refuses one without its
training record (command, step, images seen, wall time, device, final loss) or over the 25 MB budget;
then writes `sgm_inverse/weights/<name>.safetensors` + `<name>.json`, the JSON with a `shipped`
entry (source, sha256 of the weights, date). Prints what it wrote.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import shutil
import sys
from pathlib import Path

from sgm_inverse import load_score_model
from sgm_inverse.checkpoints import SHIPPED, WEIGHTS_DIR, checkpoint_paths

BUDGET_MB = 25.0
REQUIRED_TRAINING = ("step", "images_seen", "seconds", "final_loss", "config", "device")


def ship(name: str, source: Path, weights_dir: Path = WEIGHTS_DIR) -> Path:
    if name not in SHIPPED:
        raise SystemExit(f"{name!r} is not a reference checkpoint name ({', '.join(SHIPPED)})")
    model = load_score_model(source)                      # raises on a broken checkpoint
    weights, cfg_path = checkpoint_paths(Path(source))
    config = json.loads(cfg_path.read_text())
    missing = [k for k in REQUIRED_TRAINING if config.get("training", {}).get(k) is None]
    if missing or "command" not in config:
        raise SystemExit(f"{source}: the config lacks its training record ({', '.join(missing + ['command'])})")
    mb = weights.stat().st_size / 2 ** 20
    if mb > BUDGET_MB:
        raise SystemExit(f"{weights} is {mb:.1f} MB, over the {BUDGET_MB:g} MB budget of a shipped checkpoint")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    config["shipped"] = {"name": name, "source": str(source), "sha256": digest, "megabytes": round(mb, 2),
                         "date": datetime.date.today().isoformat()}
    weights_dir.mkdir(parents=True, exist_ok=True)
    out = weights_dir / f"{name}.safetensors"
    shutil.copyfile(weights, out)
    out.with_suffix(".json").write_text(json.dumps(config, indent=2) + "\n")
    t = config["training"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"shipped {name}: {out} ({mb:.1f} MB, {n_params / 1e6:.2f} M params, step {t['step']}, "
          f"{t['images_seen']} images, {t['seconds'] / 3600:.2f} h on {t['device']}, loss {t['final_loss']:.4f}, "
          f"prior mean {'none' if model.prior_mean is None else f'|mean| {float(model.prior_mean.norm()):.2f}'})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help=f"one of {', '.join(SHIPPED)}")
    ap.add_argument("source", type=Path, help="an EMA checkpoint directory (<workdir>/ema)")
    ap.add_argument("--weights-dir", type=Path, default=WEIGHTS_DIR, help="where to write (default: the library's)")
    args = ap.parse_args(argv)
    ship(args.name, args.source, args.weights_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
