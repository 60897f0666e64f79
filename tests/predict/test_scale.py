"""Predicting an archive in pieces: shards joined by merge, and batches on a Dask cluster, give the local table."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")

from radiology.cli import main  # noqa: E402
from radiology.cli.common import USAGE_ERROR  # noqa: E402
from radiology.models import load_bundle  # noqa: E402
from radiology.predict import (  # noqa: E402
    Ensemble,
    PredictionInputs,
    merge_tables,
    predict_distributed,
    predict_table,
    prediction_inputs,
    shard_inputs,
    shard_of,
)
from radiology.predict import distributed as distributed_module  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Ten phantoms in two folders and one file that is no image."""
    folder = tmp_path_factory.mktemp("archive") / "scans"
    for i in range(10):
        write_phantom_dicom(folder / f"s{i % 2}" / f"{i}.dcm", phantom_radiograph((48, 40), seed=i))
    (folder / "s0" / "broken.dcm").write_bytes(b"not a dicom")
    return folder


@pytest.fixture(scope="module")
def local(bundle_folder, archive):
    """The table of one local run over every input (each phantom with its UID, the broken file without)."""
    table = predict_table(load_bundle(bundle_folder, backend="onnx"), prediction_inputs(archive, progress=False),
                         batch_size=4, progress=False)
    assert table["SOPInstanceUID"].str.startswith("1.").sum() == 10
    assert table.loc[table["image"] == "s0/broken.dcm", "SOPInstanceUID"].tolist() == [""]
    return table


def _same(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(table.columns) == list(expected.columns)
    assert table["image"].tolist() == expected["image"].tolist()
    assert table["SOPInstanceUID"].tolist() == expected["SOPInstanceUID"].tolist()
    assert table["prediction"].tolist() == expected["prediction"].tolist()
    assert table["error"].tolist() == expected["error"].tolist()
    probs = [c for c in expected.columns if c.startswith("prob_")]
    np.testing.assert_allclose(table[probs].astype(float).to_numpy(), expected[probs].to_numpy(), atol=1e-6)


# --------------------------------------------------------------------------- shards


def test_every_input_is_in_exactly_one_shard_whatever_its_position():
    ids = [f"case{i}/img.dcm" for i in range(50)]
    inputs = PredictionInputs(ids, [None] * 50, ["gone"] * 50)
    shards = [shard_inputs(inputs, i, 3) for i in range(3)]
    assert sorted(p for s in shards for p in s.positions) == list(range(50))
    assert all(shard_of(name, 3) == i for i, s in enumerate(shards) for name in s.ids)
    # Stable by the id alone: the same id is in the same shard among other inputs.
    other = PredictionInputs(ids[::-1], [None] * 50, ["gone"] * 50)
    assert set(shard_inputs(other, 1, 3).ids) == set(shards[1].ids)
    with pytest.raises(ValueError, match="index"):
        shard_inputs(inputs, 3, 3)


def test_shards_merged_are_the_local_table(bundle_folder, archive, local):
    bundle = load_bundle(bundle_folder, backend="onnx")
    inputs = prediction_inputs(archive, progress=False)
    shards = [predict_table(bundle, inputs, batch_size=4, progress=False, shard=(i, 3)) for i in range(3)]
    assert sum(len(s) for s in shards) == len(local) == 11 and all(len(s) < len(local) for s in shards)
    assert all((s["shard"] == f"{i}/3").all() for i, s in enumerate(shards))
    _same(merge_tables(shards[::-1]), local)  # any order of the shards
    assert "not a dicom" not in local["error"].str.cat() and local["error"].ne("").sum() == 1


def test_merge_refuses_a_duplicated_or_missing_shard(bundle, archive):
    inputs = prediction_inputs(archive, progress=False)
    shards = [predict_table(bundle, inputs, progress=False, shard=(i, 3)) for i in range(3)]
    with pytest.raises(ValueError, match=r"shard 1/3 given twice \(b, d\)"):
        merge_tables([shards[0], shards[1], shards[2], shards[1]], names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="shard 2/3 missing"):
        merge_tables(shards[:2])
    with pytest.raises(ValueError, match="not a shard table"):
        merge_tables([shards[0].drop(columns=["shard", "position"])])
    other = [predict_table(bundle, inputs, progress=False, shard=(i, 2)) for i in range(2)]
    with pytest.raises(ValueError, match="shard of 2, others of 3"):
        merge_tables([shards[0], other[1]])


def test_an_empty_shard_is_a_shard(bundle, tmp_path):
    folder = tmp_path / "one"
    write_phantom_dicom(folder / "a.dcm", phantom_radiograph((40, 40), seed=1))
    inputs = prediction_inputs(folder, progress=False)
    shards = [predict_table(bundle, inputs, progress=False, shard=(i, 4)) for i in range(4)]
    assert sorted(len(s) for s in shards) == [0, 0, 0, 1]
    _same(merge_tables(shards), predict_table(bundle, inputs, progress=False))


# --------------------------------------------------------------------------- executors and Dask


def test_batches_on_an_executor_give_the_local_table(bundle_folder, archive, local):
    inputs = prediction_inputs(archive, progress=False)
    with ThreadPoolExecutor(2) as pool:
        table = predict_distributed([bundle_folder], inputs, pool, backend="onnx", batch_size=4)
    _same(table, local)
    with ThreadPoolExecutor(2) as pool:
        shard = predict_distributed([bundle_folder], inputs, pool, backend="onnx", batch_size=4, shard=(1, 3))
    assert shard.columns.tolist()[-2:] == ["shard", "position"] and shard["image"].isin(local["image"]).all()


def test_a_failed_task_becomes_error_rows_for_its_batch(bundle_folder, archive, local, monkeypatch):
    real = distributed_module._predict_part

    def flaky(folders, backend, tta, batch_size, inputs):
        if "1.dcm" in [i.split("/")[-1] for i in inputs.ids]:
            raise MemoryError(f"worker lost while reading {inputs.sources[0][0]}")
        return real(folders, backend, tta, batch_size, inputs)

    monkeypatch.setattr(distributed_module, "_predict_part", flaky)
    inputs = prediction_inputs(archive, progress=False)
    with ThreadPoolExecutor(2) as pool:
        table = predict_distributed([bundle_folder], inputs, pool, backend="onnx", batch_size=4)
    assert table["image"].tolist() == local["image"].tolist()
    lost = table["error"].str.contains("prediction failed on the cluster: MemoryError")
    assert lost.sum() == 4 and table.loc[lost, "prediction"].eq("").all()
    # Their UIDs are read here from the headers: what the local run has.
    assert table["SOPInstanceUID"].tolist() == local["SOPInstanceUID"].tolist()
    assert not any(str(archive) in e for e in table["error"])  # the message naming a path stays out
    _same(table[~lost], local[~lost.to_numpy()])


def _cluster(processes: bool):
    distributed = pytest.importorskip("dask.distributed")
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None)


def test_a_dask_cluster_gives_the_local_table(bundle_folder, archive, local):
    from dask.distributed import Client

    inputs = prediction_inputs(archive, progress=False)
    with _cluster(processes=False) as cluster, Client(cluster) as client:
        table = predict_distributed([bundle_folder], inputs, client, backend="onnx", batch_size=4)
    _same(table, local)
    assert table.loc[table["image"] == "s0/broken.dcm", "error"].str.startswith("s0/broken.dcm: ").all()


def test_a_dask_cluster_of_processes_gives_the_local_table(bundle_folder, archive, local):
    from dask.distributed import Client

    inputs = prediction_inputs(archive, progress=False)
    with _cluster(processes=True) as cluster, Client(cluster) as client:
        table = predict_distributed([bundle_folder, bundle_folder], inputs, client, backend="onnx", batch_size=4)
    _same(table, predict_table(Ensemble([load_bundle(bundle_folder, backend="onnx")] * 2), inputs, batch_size=4,
                               progress=False))
    _same(table, local)  # an ensemble of one bundle twice predicts as the bundle


# --------------------------------------------------------------------------- command line


def _predict(bundle_folder, source, out, *extra) -> int:
    return main(["predict", str(bundle_folder), str(source), "--out", str(out), "--backend", "onnx", "-q",
                 "--batch-size", "4", *extra])


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_cli_shards_and_merge_write_the_local_table(bundle_folder, archive, tmp_path, capsys):
    assert _predict(bundle_folder, archive, tmp_path / "preds.csv") == 0
    shards = [tmp_path / f"preds.shard-{i}-of-3.csv" for i in range(3)]
    for i, out in enumerate(shards):
        assert _predict(bundle_folder, archive, out, "--shard", f"{i}/3") == 0
    capsys.readouterr()
    merged = tmp_path / "merged.csv"
    assert main(["predict", "merge", *map(str, shards[::-1]), "--out", str(merged)]) == 0
    assert "11 predictions from 3 shards, 1 failed" in capsys.readouterr().out
    assert merged.read_bytes() == (tmp_path / "preds.csv").read_bytes()  # byte for byte the one-run table

    assert main(["predict", "merge", str(shards[0]), str(shards[1]), "--out", str(tmp_path / "m.csv")]) == USAGE_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("radiology predict: error: SHARD: shard 2/3 missing") and "\n" not in err
    assert main(["predict", "merge", *map(str, shards), str(shards[1]), "--out", str(tmp_path / "m.csv")]) \
        == USAGE_ERROR
    err = capsys.readouterr().err.strip()
    assert "shard 1/3 given twice" in err and "\n" not in err
    assert not (tmp_path / "m.csv").exists()
    # An existing --out only with --overwrite; a SHARD never.
    assert main(["predict", "merge", *map(str, shards), "--out", str(merged)]) == USAGE_ERROR
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", "merge", *map(str, shards), "--out", str(shards[0]), "--overwrite"]) == USAGE_ERROR
    assert "SHARD" in capsys.readouterr().err


def test_cli_a_bundle_folder_named_merge_predicts(bundle_folder, archive, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(bundle_folder, tmp_path / "merge")
    monkeypatch.chdir(tmp_path)
    assert _predict("./merge", archive, tmp_path / "p.csv") == 0
    assert len(_read(tmp_path / "p.csv")) == 11


def test_cli_scheduler_writes_the_local_table(bundle_folder, archive, tmp_path):
    from dask.distributed import Client  # noqa: F401 - skips without distributed via _cluster

    assert _predict(bundle_folder, archive, tmp_path / "local.csv") == 0
    with _cluster(processes=False) as cluster:
        assert _predict(bundle_folder, archive, tmp_path / "dask.csv", "--scheduler", cluster.scheduler_address) == 0
        assert _predict(bundle_folder, archive, tmp_path / "s1.csv", "--scheduler", cluster.scheduler_address,
                        "--shard", "1/2") == 0
    local, dask = _read(tmp_path / "local.csv"), _read(tmp_path / "dask.csv")
    assert dask["image"].tolist() == local["image"].tolist() and dask["error"].tolist() == local["error"].tolist()
    probs = [c for c in local.columns if c.startswith("prob_")]
    np.testing.assert_allclose(dask[probs].replace("", "nan").astype(float).to_numpy(),
                               local[probs].replace("", "nan").astype(float).to_numpy(), atol=1e-6)
    assert _read(tmp_path / "s1.csv")["shard"].eq("1/2").all()


def test_cli_shards_refuse_kaggle_and_an_empty_shard_exits_0(bundle_folder, tmp_path, capsys):
    folder = tmp_path / "one"
    write_phantom_dicom(folder / "a.dcm", phantom_radiograph((40, 40), seed=1))
    assert _predict(bundle_folder, folder, tmp_path / "k.csv", "--shard", "0/2", "--format", "kaggle") == USAGE_ERROR
    assert "--format kaggle: not with --shard" in capsys.readouterr().err
    outs = [tmp_path / f"p.shard-{i}-of-4.csv" for i in range(4)]
    assert all(_predict(bundle_folder, folder, out, "--shard", f"{i}/4") == 0 for i, out in enumerate(outs))
    assert sorted(len(_read(out)) for out in outs) == [0, 0, 0, 1]
    assert main(["predict", "merge", *map(str, outs), "--out", str(tmp_path / "p.csv")]) == 0
    assert _read(tmp_path / "p.csv")["image"].tolist() == ["a.dcm"]
