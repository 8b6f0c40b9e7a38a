"""``python benchmarks/run.py --smoke`` runs every section and prints its figures.

The benchmark is not part of the installed package, so it rotted once unseen (a renamed
attribute crashed ``--quick`` half-way). This runs the script by path, as a user does, with this
environment's Python (the worktree's installed package), at tiny sizes (about 10 s of CPU; the
wall time grows with the machine's load), and parses its output: every section must print a
finite figure, and the script's own list of the sections it ran must be complete.
"""
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
SCORERS = ("mcm", "neglabel", "immuno_zeroshot", "immuno_dis", "immuno", "ants_ens", "ants_vsnl", "ants",
           "adaneg", "csp", "eoe", "negrefine", "msp", "ebo", "mls", "gen", "gradnorm", "react", "ash", "scale", "dice", "knn", "vim",
           "mds", "rmds", "klm", "she", "fdbd", "nci")
# section -> the lines (regular expressions, one figure captured each) it must print
FIGURES = {
    "backbone": [rf"^CLIP ImmunoTiny-ViT image encoder \(fp32, random weights, batch \d+\): {NUMBER} ms/image$"],
    "scorers": [rf"^{name}\s+{NUMBER}\s+{NUMBER}%\s+{NUMBER}\s+-$" for name in (*SCORERS, "glmcm")]
               + [rf"^  negrefine: its row has the pair texts memoised; an image whose 5 x 5 pair texts are all "
                  rf"new encodes 200 prompts: {NUMBER} ms = {NUMBER} x the image encoder"]
               + [rf"^adaneg memory: {NUMBER} MB held for 220 slots \({NUMBER} B per slot: .* {NUMBER} KB transient"]
               + [rf"^  glmcm memory: 6,528 cache bytes/image \(49 patches x 64 x 2 B float16 \+ 64 x 4 B global\); "
                  rf"50,000 ImageNet-1K val images: {NUMBER} GB$"]
               + [rf"^runner: one backbone pass \+ all {len(SCORERS) + 1} scorers from cached features = {NUMBER} x"],
    "ants_fused": [rf"^ANTS grouped scores per batch of 32 .*: separate {NUMBER} ms/image .* fused {NUMBER} "
                   rf"ms/image .*max \|fused - separate\| {NUMBER}$"],
    "neglabel_scaling": [rf"^\s+{n} labels: {NUMBER} ms/image" for n in (100, 400)],
    "knn_bank": [rf"^\s+{n} features \(bank_ratio [\d.]+\): {NUMBER} ms/image = {NUMBER}% of the backbone$"
                 for n in (200, 2000)],
    "vaccination": [rf"^vaccination: {NUMBER} s/epoch on 500 features x 200 antibodies"],
    "vaccination_paper_scale": [rf"^vaccination {p}, batch {b}: {NUMBER} s/epoch .* epochs: {NUMBER} min$"
                                for p, b in (("fp32", 256), ("bf16", 4096))],
    "evt": [rf"^EVT: one batched Weibull fit for 20 classes .*: {NUMBER} s$"],
    "end_to_end": [rf"^  encoder alone on pre-decoded tensors: {NUMBER} images/s$"]
                  + [rf"^  {b}\s+cpu\s+{w}\s+\d\s+no\s+{NUMBER}\s+{NUMBER}%$" for b in ("pil", "tensor") for w in (0, 1)]
                  + [rf"^  end-to-end / encoder-only = {NUMBER} ",
                     rf"^  where the time goes, .*: read {NUMBER}, .* encoder {NUMBER}$"],
    "decode_difference": [rf"^tensor decode path vs PIL reference .*: feature max \|diff\| {NUMBER}, cosine min "
                          rf"{NUMBER} / mean {NUMBER}; MCM AUROC max \|diff\| over the 5 OOD sets {NUMBER} points$"],
}


def test_every_section_of_the_smoke_benchmark_prints_its_figures(minibench, tmp_path):
    out = tmp_path / "figures.json"
    env = {**os.environ, "OPENOOD_IMMUNO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(RUN), "--smoke", "--device", "cpu", "--data-root", str(minibench),
                           "--json", str(out)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    missing = []
    for section, patterns in FIGURES.items():
        for pattern in patterns:
            found = [m for m in (re.search(pattern, line) for line in lines) if m]
            if not found:
                missing.append(f"{section}: {pattern}")
                continue
            assert all(math.isfinite(float(x)) for x in found[0].groups()), (section, found[0].group(0))
    assert not missing, "sections whose figures are missing:\n" + "\n".join(missing) + "\n" + proc.stdout[-3000:]
    figures = json.loads(out.read_text())
    assert list(figures["sections"]) == list(FIGURES), figures["sections"]
    assert lines[-1].startswith("sections run (") and all(f" {s} " in lines[-1] for s in FIGURES)
    assert figures["mode"] == "smoke" and set(figures["scorers"]) == {*SCORERS, "glmcm"}
    print(f"benchmarks/run.py --smoke: {figures['wall_s']:.1f} s of sections, load average "
          f"{figures['load_average_start']:.1f} at start")
