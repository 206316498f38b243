"""README.md and the docs: the set-up commands CI runs, the Python example (run, with few steps), and every
file the documents point to exists."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = ["README.md", "CHANGELOG.md", "docs/methods.md", "docs/training.md", "docs/checkpoints.md",
        "docs/benchmarks.md"]


def block_after(marker: str, text: str = README) -> tuple[str, str]:
    """(language, body) of the fenced code block that follows `marker`."""
    m = re.search(re.escape(marker) + r"\s*\n```(\w*)\n(.*?)\n```", text, re.S)
    assert m, f"README.md has no code block after {marker}"
    return m.group(1), m.group(2)


def test_setup_blocks_are_the_ones_ci_runs():
    """.ci/run executes the line two lines after <!-- test-command --> verbatim; the main command sets up and
    runs the demo on a fresh machine."""
    assert block_after("<!-- main-command -->") == (
        "bash", "pip install torch==2.13.0 && pip install -e . && sgm-inverse demo")
    lines = README.splitlines()
    i = lines.index("<!-- test-command -->")
    assert lines[i + 1] == "```bash"
    assert lines[i + 2] == ('pip install -e ".[test]" && python data_scripts/prepare_brain.py && '
                            'python data_scripts/prepare_digits.py && python -m pytest -q')


def test_python_example_runs(tmp_path):
    """The README's example, as a user would paste it, with 2 sampler steps instead of 200. The FBP line is
    exact (noiseless 23-view data of the shipped slice; measured 25.21 dB); the prior's line only has to
    be there at 2 steps."""
    language, code = block_after("<!-- python-example -->")
    assert language == "python"
    assert "steps=200" in code
    script = tmp_path / "example.py"
    script.write_text(code.replace("steps=200", "steps=2"))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    fbp = re.search(r"^FBP\s+PSNR ([\d.]+) dB\s+SSIM ([\d.]+)", r.stdout, re.M)
    assert fbp and 24.5 < float(fbp.group(1)) < 26.0 and 0.7 < float(fbp.group(2)) < 0.8, r.stdout
    assert re.search(r"^score prior\s+PSNR [\d.]+ dB", r.stdout, re.M), r.stdout
    assert "uncertainty map (1, 1, 64, 64)" in r.stdout


def referenced_paths(name: str) -> list[str]:
    """Relative links [..](path) and `benchmarks/results/...` / `archive/...` paths named in a document,
    as paths from the repository root (a path with NAME in it is a pattern, e.g. samples_NAME.png)."""
    doc = ROOT / name
    text = doc.read_text()
    found = []
    for link in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", link):
            found.append(os.path.normpath((doc.parent / link).relative_to(ROOT)))
    found += re.findall(r"`(benchmarks/results/[^`\s*<>]+)`", text)
    found += [f"benchmarks/results/{p}" for p in re.findall(r"`(archive/[^`\s*<>]+)`", text)]
    found += re.findall(r"\((benchmarks/results/[^)\s*<>]+)\)", text)
    return found


@pytest.mark.parametrize("name", DOCS)
def test_every_referenced_file_exists(name):
    paths = referenced_paths(name)
    assert paths, name
    missing = sorted({p for p in paths if "NAME" not in p and not (ROOT / p.rstrip("/")).exists()})  # NAME: a pattern
    assert not missing, f"{name} points to files that do not exist: {missing}"
