"""The result cache: its bounds, and the scheduler's rules with one (fake workers, fake clock)."""

from __future__ import annotations

from raypw.cache import ENTRY_OVERHEAD, MISS, ResultCache
from raypw.protocol import OutcomeChunk, Pickled
from tests.unit.test_scheduler import Clock, Pool


def cached_pool(max_entries: int = 100, ttl: float | None = None, workers: int = 2) -> Pool:
    pool = Pool(workers=workers, cache=(max_entries, 10**9, ttl))
    pool.connect("a")
    return pool


def test_a_stored_result_is_served_and_counted_as_a_hit():
    cache = ResultCache(10, 10**6)
    cache.put("k", "v")
    assert cache.get("k") == "v"
    assert cache.get("other") is MISS
    assert (cache.hits, cache.stored, len(cache)) == (1, 1, 1)


def test_the_least_recently_used_entry_leaves_first_beyond_max_entries():
    cache = ResultCache(2, 10**6)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert cache.get("b") is MISS
    assert (cache.get("a"), cache.get("c"), len(cache)) == (1, 3, 2)


def test_the_cache_holds_no_more_bytes_than_max_bytes():
    big = Pickled(b"x" * 1000)
    cache = ResultCache(100, 2 * (ENTRY_OVERHEAD + 1001))
    for key in "abcde":
        cache.put(key, big)
        assert cache.bytes <= 2 * (ENTRY_OVERHEAD + 1001)
    assert len(cache) == 2
    assert cache.get("d") == big and cache.get("e") == big


def test_a_result_larger_than_max_bytes_is_not_kept():
    cache = ResultCache(100, 500)
    cache.put("a", 1)
    cache.put("huge", "y" * 1000)
    assert cache.get("huge") is MISS
    assert cache.get("a") == 1


def test_a_result_is_not_served_after_its_time_to_live():
    clock = Clock()
    cache = ResultCache(10, 10**6, ttl_seconds=5.0, clock=clock)
    cache.put("k", "v")
    clock.now = 4.9
    assert cache.get("k") == "v"  # a hit does not extend its life
    clock.now = 5.0
    assert cache.get("k") is MISS
    assert (len(cache), cache.bytes) == (0, 0)


def test_storing_a_key_again_replaces_its_result_and_its_bytes():
    cache = ResultCache(10, 10**6)
    cache.put("k", "short")
    cache.put("k", "a longer result")
    assert cache.get("k") == "a longer result"
    assert cache.bytes == ENTRY_OVERHEAD + 1 + len("a longer result")


# -- the scheduler with a cache -------------------------------------------------------------


def test_an_equal_request_after_one_finished_gets_its_result_without_being_processed():
    pool = cached_pool()
    first = pool.submit("a", ["x"])
    pool.finish(0)
    assert pool.results("a") == {first[0]: "x!"}
    again = pool.submit("a", ["x", "y"])
    assert pool.results("a") == {again[0]: "x!"}  # at once, from the cache
    assert pool.requests(0) == [["y"]] and pool.requests(1) == []  # only "y" goes out
    pool.finish(0)
    assert pool.results("a") == {again[1]: "y!"}
    assert pool.ran == ["x", "y"]
    assert pool.scheduler.cache is not None and pool.scheduler.cache.hits == 1


def test_the_cache_answers_every_client_of_the_service():
    pool = cached_pool()
    pool.connect("b")
    pool.submit("a", ["x"])
    pool.finish(0)
    ids = pool.submit("b", ["x"])
    assert pool.results("b") == {ids[0]: "x!"}
    assert pool.ran == ["x"]


def test_an_error_is_not_cached_and_an_equal_request_runs_again():
    pool = cached_pool()
    pool.submit("a", ["bad"])
    batch = pool.batches[0].pop(0)
    chunk = OutcomeChunk(batch.batch_id, [0], [None], {0: "boom"}, 0.001, final=True)
    pool.act(pool.scheduler.chunk(0, chunk))
    pool.submit("a", ["good"])
    pool.finish(0)
    pool.mail("a")
    again = pool.submit("a", ["bad", "good"])
    assert pool.results("a") == {again[1]: "good!"}
    assert pool.requests(0) == [["bad"]]


def test_a_request_equal_to_a_running_one_joins_it_and_is_cached_once_it_ends():
    pool = cached_pool()
    pool.connect("b")
    first = pool.submit("a", ["x"])
    joined = pool.submit("b", ["x"])  # x is running: dedup, not the cache
    assert pool.scheduler.deduplicated == 1
    pool.finish(0)
    assert pool.results("a") == {first[0]: "x!"} and pool.results("b") == {joined[0]: "x!"}
    later = pool.submit("b", ["x"])
    assert pool.results("b") == {later[0]: "x!"}
    assert pool.ran == ["x"]


def test_an_expired_entry_is_processed_again():
    pool = cached_pool(ttl=60.0)
    pool.submit("a", ["x"])
    pool.finish(0)
    pool.mail("a")
    pool.clock.now += 61.0
    ids = pool.submit("a", ["x"])
    assert pool.results("a") == {}
    pool.finish(0)
    assert pool.results("a") == {ids[0]: "x!"}
    assert pool.ran == ["x", "x"]


def test_a_cache_hit_keeps_the_deadlines_and_priorities_of_the_other_requests():
    pool = cached_pool(workers=1)
    pool.submit("a", ["x"])
    pool.finish(0)
    pool.mail("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])  # sent ahead, behind busy: the queue is next
    ids = pool.submit("a", ["x", "y", "z"], timeout=[None, 1.0, None], priority=[0, 1, 5])
    assert pool.results("a") == {ids[0]: "x!"}
    pool.later(2.0)  # y's deadline passes while it waits; z has none
    assert pool.results("a") == {ids[1]: "timed out"}
    for _ in range(3):
        pool.finish(0)
    assert pool.ran == ["x", "busy", "ahead", "z"]


def test_an_abort_that_overtook_its_submit_wins_over_the_cache():
    pool = cached_pool()
    pool.submit("a", ["x"])
    pool.finish(0)
    pool.mail("a")
    next_id = pool.next_id["a"]
    early = pool.aborting("a", [])
    message = type(early)("a", early.epoch, [next_id], [pool.next_seq["a"] + 1])
    pool.act(pool.scheduler.abort(message))
    pool.submit("a", ["x"])
    assert pool.results("a") == {}
    assert pool.scheduler.cache is not None and pool.scheduler.cache.hits == 0
