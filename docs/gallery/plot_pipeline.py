"""
A declarative preprocessing pipeline
====================================

A :class:`radiology.pipeline.Pipeline` is data: a :class:`~radiology.pipeline.Decode` (how a
DICOM becomes pixels) and an ordered list of named steps. It saves to JSON or YAML, a model
stores it with itself, and conversion, training and inference all run it through the same
:meth:`~radiology.pipeline.Pipeline.read`. :meth:`~radiology.pipeline.Pipeline.trace`
returns every stage, which is what ``radiology preview`` draws.
"""

# %%
# A pipeline written as JSON (as it would be saved next to a model), loaded and checked:
# every step validates its parameters when it is built, naming the step and the parameter.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from radiology.pipeline import Pipeline
from radiology.synthetic import add_findings, phantom_radiograph, write_phantom_dicom

text = """
{"format": "radiology.pipeline", "version": 2,
 "decode": {"frame": 0, "bits": true, "modality_lut": true, "polarity": true, "color": "gray"},
 "steps": [
    {"name": "percentile", "low": 0.5, "high": 99.5},
    {"name": "clean_background"},
    {"name": "clahe", "clip_limit": 2.0, "tile_grid": [8, 8]},
    {"name": "resize", "width": 256},
    {"name": "pad_square"}]}
"""
pipeline = Pipeline.from_json(text)
for step in pipeline.to_dict()["steps"]:  # defaults filled in
    print(step)

try:
    Pipeline.from_json(text.replace('"clip_limit": 2.0', '"clip_limit": 0'))
except ValueError as error:  # a pipeline file names itself too: PipelineError
    print("refused:", error)

# %%
# Run it on a DICOM file: a MONOCHROME1 chest phantom with an effusion, stored with 12 bits
# and a Modality LUT (rescale slope and intercept) in the header.
folder = Path(tempfile.mkdtemp())
image = add_findings(phantom_radiograph((400, 360), seed=4), {"effusion"}, seed=4)
path = write_phantom_dicom(folder / "chest.dcm", image, photometric="MONOCHROME1", bits_stored=12,
                           rescale=(2.0, -1024.0))
stages = pipeline.trace(path)
fig, axes = plt.subplots(1, len(stages), figsize=(3 * len(stages), 3.4))
for ax, (name, stage) in zip(axes, stages):
    ax.imshow(stage, cmap="gray")
    ax.set_title(f"{name}\n{stage.shape[1]}×{stage.shape[0]}, [{stage.min():.4g}, {stage.max():.4g}]", fontsize=8)
    ax.axis("off")
fig.tight_layout()

# %%
# The last stage is exactly what :meth:`~radiology.pipeline.Pipeline.read` returns, and a
# saved and reloaded pipeline gives the same image.
saved = pipeline.save(folder / "preprocess.yaml")
again = Pipeline.load(saved).read(path)
print(saved.name, "reloaded; same image:", bool((again == stages[-1][1]).all()), again.shape, again.dtype)
plt.show()
