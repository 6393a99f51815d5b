"""The demo's folds as the workflow runs them: k ``train_fold`` jobs (one process each) against one
``train_folds_stacked`` job (``train.folds_per_job: all``), whole process against whole process.

Each job is a fresh Python process that imports spinefx and torch, reads the patch files, trains,
predicts and writes its outputs, as a Snakemake job does (Snakemake's own start-up, the same for
both, is left out). Same settings for both: config/config.yaml's training block on the CPU,
``--epochs`` epochs, ``--threads`` threads, a synthetic cohort of the demo's shape (80 patients,
5 folds, 3 slices, x1 copies). Rounds alternate which side runs first (these machines are noisy).

    python bench/fold_jobs.py [--rounds 2] [--epochs 1] [--threads 2]

Last line: stacked_ratio=<k train_fold processes' seconds / the stacked process's seconds>
(above 1: one stacked job is faster than the k jobs it replaces).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
K = 5


def job(root: Path, which: str, fold: int, epochs: int, threads: int) -> None:
    """One job's whole work, in this (fresh) process."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "bench"))
    from train_throughput import demo_config, outputs_in

    from spinefx.learn.stacked import train_folds_stacked
    from spinefx.learn.train import train_fold

    cfg = demo_config(argparse.Namespace(epochs=epochs, threads=threads))
    files = json.loads((root / "files.json").read_text())
    files = {pid: Path(p) for pid, p in files.items()}
    folds = pd.read_csv(root / "folds.tsv", sep="\t", dtype={"patient_id": str})
    out = root / f"{which}_{time.monotonic_ns()}"
    if which == "fold":
        train_fold(files, folds, fold, outputs_in(out / f"fold_{fold}"), cfg)
    else:
        outs = {f: outputs_in(out / f"fold_{f}") for f in range(1, K + 1)}
        train_folds_stacked(files, folds, range(1, K + 1), outs, out / "stacked_state.pt", cfg)


def run(root: Path, which: str, fold: int, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--job", which, "--fold", str(fold), "--root", str(root)]
    cmd += ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--job", choices=("fold", "stacked"), help=argparse.SUPPRESS)
    ap.add_argument("--fold", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.job:
        job(args.root, args.job, args.fold, args.epochs, args.threads)
        return
    sys.path.insert(0, str(REPO / "bench"))
    from train_throughput import write_cohort

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files, folds = write_cohort(root / "patches", n_patients=80, copies=1)
        folds["fold"] = [1 + i % K for i in range(len(folds))]
        folds.to_csv(root / "folds.tsv", sep="\t", index=False)
        (root / "files.json").write_text(json.dumps({pid: str(p) for pid, p in files.items()}))
        seq, stk = [], []
        for r in range(args.rounds):
            for which in ("sequential", "stacked") if r % 2 == 0 else ("stacked", "sequential"):
                if which == "sequential":
                    per_fold = [run(root, "fold", f, args) for f in range(1, K + 1)]
                    seq.append(sum(per_fold))
                    print(f"round {r + 1}: {K} train_fold processes {seq[-1]:.1f} s "
                          f"({', '.join(f'{s:.1f}' for s in per_fold)})", flush=True)  # fmt: skip
                else:
                    stk.append(run(root, "stacked", 0, args))
                    print(f"round {r + 1}: one train_folds_stacked process {stk[-1]:.1f} s", flush=True)
    print(
        f"best of {args.rounds}: {K} train_fold jobs {min(seq):.1f} s, one stacked job {min(stk):.1f} s "
        f"(resnet18, {args.epochs} epoch(s), {args.threads} threads, config.yaml's train settings)"
    )
    print(f"stacked_ratio={min(seq) / min(stk):.3f}")


if __name__ == "__main__":
    main()
