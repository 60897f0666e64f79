"""Would calibrated probabilities raise the ODIR-5K score? An upper bound, from a saved TEST run.

The challenge's score thresholds every probability at 0.5, so the issue asked for probabilities
that "mean what they say" (per-label Platt scaling). Before building that into ``train``, this
script bounds what it could do: it fits the per-label Platt scaling on the TEST predictions
*themselves* (no calibration fitted on other patients can fit TEST better) and scores the
result, beside the raw probabilities and the probabilities shifted so that the bundle's own
per-label decision thresholds fall at 0.5. Nothing here is chosen for a model: it reads the
probabilities ``bench/quality.py --json RUN.json`` saved (``RUN.npz``) and the bundle's
``labels.json``.

Usage::

    python bench/quality.py --tasks odir --methods ours --seeds 0 --json runs/odir.json --work runs/w-odir
    python bench/odir_calibration.py runs/odir.npz runs/w-odir/odir/ours-0/bundle
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from radiology.evaluate import odir_score


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt_on_itself(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-label Platt scaling fitted on the very predictions it rescales (an upper bound, not a method)."""
    out = np.empty_like(probs)
    for k in range(probs.shape[1]):
        z = _logit(probs[:, k : k + 1])
        out[:, k] = LogisticRegression(C=1e6).fit(z, targets[:, k]).predict_proba(z)[:, 1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", type=Path, help="bench/quality.py's probabilities (RUN.npz)")
    parser.add_argument("bundle", type=Path, help="the bundle of that run (for its decision thresholds)")
    parser.add_argument("--key", default="odir__ours__0", help="which run of the .npz (default odir__ours__0)")
    args = parser.parse_args()
    saved = np.load(args.npz)
    probs, targets = saved[args.key].astype(np.float64), saved["odir__targets"].astype(np.float64)
    thresholds = np.asarray(json.loads((args.bundle / "labels.json").read_text())["thresholds"], np.float64)
    rows = {"raw probabilities": probs,
            "shifted: the bundle's thresholds at 0.5": 1 / (1 + np.exp(-(_logit(probs) - _logit(thresholds)))),
            "Platt per label, fitted on TEST itself": platt_on_itself(targets, probs)}
    print(f"{len(targets)} TEST patients; mean probability per label {np.round(probs.mean(0), 2).tolist()}, "
          f"prevalence {np.round(targets.mean(0), 2).tolist()}")
    print(f"{'':42s} {'kappa':>6s} {'F1':>6s} {'AUC':>6s} {'score':>6s}")
    for name, values in rows.items():
        s = odir_score(targets, values)
        print(f"{name:42s} {s['kappa']:6.3f} {s['f1']:6.3f} {s['auc']:6.3f} {s['score']:6.3f}")


if __name__ == "__main__":
    main()
