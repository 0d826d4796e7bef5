"""Objects replaced by rollup: the current copy stays whole until the next one is, and no purge is needed."""

import os

import pytest
from nats.js.object_store import ObjectStore

from schemas.subjects import SNAPSHOTS_BUCKET
from valor import objstore

BUCKET = SNAPSHOTS_BUCKET


async def test_an_object_reads_back_as_stored_and_nats_py_reads_it_too(js):
    data = os.urandom(3 * objstore.CHUNK + 17)
    meta = await objstore.put(js, BUCKET, "x", data)
    assert (meta.size, meta.chunks) == (len(data), 4)
    assert await objstore.get(js, BUCKET, "x") == data
    assert (await ObjectStore(BUCKET, f"OBJ_{BUCKET}", js).get("x")).data == data


async def test_a_missing_object_is_none(js):
    assert await objstore.get(js, BUCKET, "nothing") is None


async def test_replacing_an_object_keeps_at_most_two_copies(js):
    sizes = [5 * objstore.CHUNK, 2 * objstore.CHUNK + 1, 3 * objstore.CHUNK, 10]
    for i, size in enumerate(sizes):
        data = bytes([i]) * size
        await objstore.put(js, BUCKET, "x", data)
        assert await objstore.get(js, BUCKET, "x") == data
    state = (await js.stream_info(f"OBJ_{BUCKET}")).state
    assert state.messages == 3 + 1 + 1  # the copy before (3 chunks), the current one (1) and the meta


async def test_a_copy_cut_short_by_a_crash_leaves_the_current_one_readable(js):
    await objstore.put(js, BUCKET, "x", b"a" * (2 * objstore.CHUNK))  # slot a
    await objstore.put(js, BUCKET, "x", b"b" * (2 * objstore.CHUNK))  # slot b
    # The next writer dies after one chunk into slot a, before the meta.
    await js.publish(f"$O.{BUCKET}.C.x-a", b"c" * objstore.CHUNK, headers=objstore.ROLLUP)
    assert await objstore.get(js, BUCKET, "x") == b"b" * (2 * objstore.CHUNK)
    await objstore.put(js, BUCKET, "x", b"d")
    assert await objstore.get(js, BUCKET, "x") == b"d"


async def test_chunks_that_do_not_match_the_meta_are_corrupt_not_returned(js):
    await objstore.put(js, BUCKET, "x", b"a" * 10)
    await js.publish(f"$O.{BUCKET}.C.x-a", b"b" * 10, headers=objstore.ROLLUP)  # a second writer, same slot
    with pytest.raises(objstore.ObjectCorrupt, match="^x: 1 chunks, 10 bytes, digest "):
        await objstore.get(js, BUCKET, "x")
