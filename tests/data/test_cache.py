"""ImageCache: identical arrays on a hit without decoding again, keys follow content and pipeline."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from radiology.data import ImageCache, default_cache_dir
from radiology.pipeline import CLAHE, PadSquare, Percentile, Pipeline, Resize
from tests.data.conftest import write_case


class CountingPipeline(Pipeline):
    """A pipeline that counts how often it decodes a file."""

    calls = 0

    def read(self, source):
        self.calls += 1
        return super().read(source)


@pytest.fixture
def source(tmp_path):
    return write_case(tmp_path / "in" / "p.dcm", seed=1, encoding="rle")


def test_hit_returns_the_identical_array_without_decoding(tmp_path, source):
    pipeline = CountingPipeline([Percentile(1, 99), Resize(longest=32), PadSquare()])
    cache = ImageCache(tmp_path / "cache")
    first = cache.load(source, pipeline)
    again = cache.load(source, pipeline)
    assert pipeline.calls == 1 and (cache.misses, cache.hits) == (1, 1)
    assert first.dtype == np.float32 and first.shape == (32, 32)
    assert first.tobytes() == again.tobytes()
    np.testing.assert_array_equal(first, Pipeline(pipeline.steps).read(source))  # the cache changes nothing
    # A new cache object (another process, a later run) reads the stored entry.
    other = ImageCache(tmp_path / "cache")
    assert other.load(source, pipeline).tobytes() == first.tobytes() and pipeline.calls == 1
    # Same bytes under another name: still a hit (the key is the content, not the path).
    copy = shutil.copy(source, tmp_path / "renamed.dcm")
    assert other.load(copy, pipeline).tobytes() == first.tobytes() and pipeline.calls == 1


def test_key_changes_with_pipeline_and_content(tmp_path, source):
    cache = ImageCache(tmp_path / "cache")
    small = Pipeline([Resize(longest=32), PadSquare()])
    assert cache.entry(source, small) == cache.entry(source, Pipeline([Resize(longest=32), PadSquare()]))
    other = Pipeline([Resize(longest=32), PadSquare(), CLAHE(clip_limit=3.0)])
    assert cache.entry(source, small) != cache.entry(source, other)
    assert cache.entry(source, small).parent.parent != cache.entry(source, other).parent.parent
    a, b = cache.load(source, small), cache.load(source, other)
    assert not np.array_equal(a, b)
    assert len(list(cache.root.rglob("*.npy"))) == 2
    assert len(list(cache.root.glob("*/pipeline.json"))) == 2  # each pipeline folder says what it holds
    before = cache.entry(source, small)
    write_case(source, seed=2)  # new content, same path
    assert cache.entry(source, small) != before


def test_clear_size_and_default_location(tmp_path, source, monkeypatch):
    cache = ImageCache(tmp_path / "cache")
    cache.load(source, Pipeline([Resize(longest=16), PadSquare()]))
    assert cache.size_bytes() >= 16 * 16 * 4
    assert cache.clear() == 1 and cache.size_bytes() == 0 and not cache.root.exists()
    # A cache pointed at a folder holding other files removes only its own entries.
    shared = ImageCache(tmp_path / "in")
    shared.load(source, Pipeline([Resize(longest=16), PadSquare()]))
    assert shared.clear() == 1 and source.exists() and sorted(p.name for p in shared.root.iterdir()) == ["p.dcm"]
    monkeypatch.setenv("RADIOLOGY_CACHE", str(tmp_path / "env"))
    assert ImageCache().root == tmp_path / "env" == default_cache_dir()
    monkeypatch.delenv("RADIOLOGY_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "radiology", "images")


def test_concurrent_loads_agree_and_leave_no_temporary_files(tmp_path, source):
    pipeline = Pipeline([Resize(longest=32), PadSquare()])
    caches = [ImageCache(tmp_path / "cache") for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: c.load(source, pipeline), caches))
    assert all(r.tobytes() == results[0].tobytes() for r in results)
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.name.endswith(".tmp")] == []


def test_corrupt_entry_is_recomputed(tmp_path, source):
    pipeline = CountingPipeline([Resize(longest=32), PadSquare()])
    cache = ImageCache(tmp_path / "cache")
    good = cache.load(source, pipeline)
    cache.entry(source, pipeline).write_bytes(b"garbage")
    assert cache.load(source, pipeline).tobytes() == good.tobytes() and pipeline.calls == 2


def test_open_cache_default_is_the_environment_folder_and_none_disables(tmp_path, monkeypatch):
    from radiology.data import open_cache

    monkeypatch.setenv("RADIOLOGY_CACHE", str(tmp_path / "env"))
    assert open_cache(None).root == tmp_path / "env"  # str(None) is "None": the default must not read as "none"
    assert open_cache("none") is None and open_cache(" NONE ") is None
    assert open_cache(tmp_path / "given").root == tmp_path / "given"
