"""Convert a Kaggle UNIFESP-style DICOM tree to 512-wide PNGs named by SOP Instance UID.

The layout is ``train/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`` plus ``train.csv``
(``SOPInstanceUID,Target``). The script writes ``OUT/train/<uid>.png``, the conversion
report, and a non-PHI metadata table, and checks that every labelled image was converted.

Usage: ``python examples/convert_unifesp.py [ROOT] [OUT] [--workers N]``
(ROOT defaults to ../shared/data/unifesp_layout).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from radiology.convert import ConvertOptions, convert_folder
from radiology.dicom import metadata_table

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "unifesp_layout"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", default=DEFAULT_ROOT)
    parser.add_argument("out", type=Path, nargs="?", default=Path("unifesp-png"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not (args.root / "train.csv").exists():
        raise SystemExit(f"{args.root}: no train.csv (point ROOT at a UNIFESP-style folder)")

    options = ConvertOptions(width=512, naming="uid")
    report = convert_folder(args.root / "train", args.out / "train", options, workers=args.workers)
    print(report.summary)
    metadata_table(args.root / "train").to_csv(args.out / "train_metadata.csv", index=False)

    labels = pd.read_csv(args.root / "train.csv", dtype={"SOPInstanceUID": str})
    converted = {Path(o).stem for o in report.table.output[report.table.status == "ok"]}
    missing = set(labels.SOPInstanceUID) - converted
    print(f"{len(labels) - len(missing)}/{len(labels)} labelled images converted")
    if missing:
        raise SystemExit(f"missing: {sorted(missing)[:5]} ...")


if __name__ == "__main__":
    main()
