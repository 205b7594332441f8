"""The scheduler's rules, without Ray: fake workers and a fake clock.

A :class:`Pool` plays the Coordinator: it performs the scheduler's actions on fake workers
that run nothing until the test says which positions finish.
"""

from __future__ import annotations

import pytest

from raypw.batching import BatchSizer
from raypw.cache import ResultCache
from raypw.errors import WorkerDiedError
from raypw.protocol import (
    Abort,
    Failed,
    FastPathReport,
    FastPathRun,
    Forgotten,
    OutcomeChunk,
    Outcomes,
    Submit,
    TimedOut,
)
from raypw.scheduler import (
    OVERTAKE_SECONDS,
    Cancel,
    Dispatch,
    Expire,
    Kill,
    Recycle,
    Retire,
    Scheduler,
    Skip,
    SkipUnstarted,
    TakeBack,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Pool:
    """A scheduler with fake workers. ``batches[w]`` lists the batches worker w holds."""

    def __init__(
        self,
        workers: int = 2,
        max_retries: int = 3,
        timed: int = 1_000_000,
        grace: float = 5.0,
        max_requests_per_worker: int | None = None,
        cache: tuple[int, int, float | None] | None = None,
    ) -> None:
        self.clock = Clock()
        sizer = BatchSizer(target_batch_seconds=0.02, max_batch_size=1000)
        sizer.timed = timed  # most tests start with a sizer that has seen enough
        sizer.seconds_per_request = 0.001  # 20 per batch at most
        self.scheduler = Scheduler(
            workers,
            sizer,
            max_retries,
            clock=self.clock,
            grace=grace,
            max_requests_per_worker=max_requests_per_worker,
            cache=None if cache is None else ResultCache(*cache, clock=self.clock),
        )
        self.batches: dict[int, list] = {w: [] for w in range(workers)}
        self.retired: list[int] = []
        self.recycled: list[int] = []
        self.started: dict[int, int] = {}  # batch id -> highest position started
        self.skips: list[Skip] = []
        self.take_backs: list[TakeBack] = []
        self.cancels: list[Cancel] = []
        self.expires: list[Expire] = []
        self.kills: list[Kill] = []
        self.epochs: dict[str, int] = {}
        self.next_id: dict[str, int] = {}
        self.next_seq: dict[str, int] = {}
        self.sent_in: dict[tuple[str, int], int] = {}  # (client, request id) -> its submit
        self.given_back: dict[int, set[int]] = {}  # batch id -> positions it will skip
        self.ran: list = []  # requests in the order workers reported them done
        self.act(self.scheduler.workers_started())

    def act(self, actions) -> None:
        for action in actions:
            if isinstance(action, Dispatch):
                self.batches[action.worker].append(action.batch)
            elif isinstance(action, Skip):
                self.skips.append(action)
            elif isinstance(action, TakeBack):
                self.take_backs.append(action)
            elif isinstance(action, Cancel):
                self.cancels.append(action)
            elif isinstance(action, Expire):
                self.expires.append(action)
            elif isinstance(action, Kill):
                self.kills.append(action)
                self.batches[action.worker].clear()  # the process dies with what it held
            elif isinstance(action, Retire | Recycle):
                assert not self.batches[action.worker], "a worker left holding work"
                (self.retired if isinstance(action, Retire) else self.recycled).append(
                    action.worker
                )

    def connect(self, client: str) -> None:
        epoch, actions = self.scheduler.connect(client)
        self.epochs[client] = epoch
        self.next_id.setdefault(client, 1)
        self.act(actions)

    def submit(self, client: str, requests, keys=None, timeout=None, priority=None) -> list[int]:
        first = self.next_id[client]
        ids = list(range(first, first + len(requests)))
        self.next_id[client] = first + len(requests)
        seq = self.next_seq[client] = self.next_seq.get(client, 0) + 1
        for request_id in ids:
            self.sent_in[(client, request_id)] = seq
        timeouts = timeout if isinstance(timeout, list) or timeout is None else [timeout] * len(ids)
        priorities = (
            priority if isinstance(priority, list) or priority is None else [priority] * len(ids)
        )
        message = Submit(
            client, self.epochs[client], seq, ids, list(requests), keys, timeouts, priorities
        )
        self.act(self.scheduler.submit(message))
        return ids

    def aborting(self, client: str, ids: list[int]) -> Abort:
        """The Abort a client sends for requests it submitted with :meth:`submit`."""
        seqs = [self.sent_in[(client, i)] for i in ids]
        return Abort(client, self.epochs[client], list(ids), seqs)

    def requests(self, worker: int) -> list[list]:
        return [batch.requests for batch in self.batches[worker]]

    def finish(self, worker: int, count: int | None = None, final: bool = True, seconds=0.001):
        """The worker's oldest batch reports its next ``count`` positions (all by default)."""
        batch = self.batches[worker][0]
        start = self.started.get(batch.batch_id, -1) + 1
        end = len(batch.requests) if count is None else start + count
        given_back = self.given_back.get(batch.batch_id, set())
        positions = [p for p in range(start, end) if p not in given_back]
        self.started[batch.batch_id] = end - 1
        self.ran.extend(batch.requests[p] for p in positions)
        chunk = OutcomeChunk(
            batch.batch_id,
            positions,
            [f"{batch.requests[p]}!" for p in positions],
            None,
            seconds * len(positions),
            final=final,
            skipped=tuple(sorted(given_back)) if final else (),
        )
        if final:
            self.batches[worker].pop(0)
        self.act(self.scheduler.chunk(worker, chunk))

    def give_back(self, take: TakeBack, late: list[int] | None = None) -> None:
        """The worker answers a take-back: all but ``late`` are given back (and skipped)."""
        late = late or []
        self.given_back.setdefault(take.batch_id, set()).update(
            p for p in take.positions if p not in late
        )
        self.act(self.scheduler.taken_back(take.batch_id, take.positions, late=late))

    def end_skipping(self, worker: int, batch_index: int, skipped: tuple[int, ...]) -> None:
        """The worker's batch ends without running ``skipped`` positions."""
        batch = self.batches[worker].pop(batch_index)
        start = self.started.get(batch.batch_id, -1) + 1
        positions = [p for p in range(start, len(batch.requests)) if p not in skipped]
        chunk = OutcomeChunk(
            batch.batch_id,
            positions,
            [f"{batch.requests[p]}!" for p in positions],
            None,
            0.001,
            final=True,
            skipped=skipped,
        )
        self.act(self.scheduler.chunk(worker, chunk))

    def mail(self, client: str) -> list:
        return self.scheduler.take_mail(client)

    def results(self, client: str) -> dict[int, object]:
        found: dict[int, object] = {}
        for news in self.mail(client):
            if isinstance(news, Outcomes):
                found.update(zip(news.ids, news.results, strict=True))
            elif isinstance(news, Failed):
                found.update(dict.fromkeys(news.ids, news.error))
            elif isinstance(news, TimedOut):
                found.update(dict.fromkeys(news.ids, "timed out"))
        return found

    def later(self, seconds: float) -> None:
        """The clock moves on, and the shell's timer calls tick()."""
        self.clock.now += seconds
        self.act(self.scheduler.tick())


@pytest.fixture
def pool() -> Pool:
    made = Pool()
    made.connect("a")
    return made


# -- dedup ---------------------------------------------------------------------------------


def test_equal_requests_from_all_clients_run_once_and_reach_every_client(pool):
    pool.connect("b")
    a_ids = pool.submit("a", ["x", "y"])
    b_ids = pool.submit("b", ["x"])
    assert pool.scheduler.deduplicated == 1
    pool.finish(0)
    pool.finish(1)
    assert pool.results("a") == {a_ids[0]: "x!", a_ids[1]: "y!"}
    assert pool.results("b") == {b_ids[0]: "x!"}


def test_keys_decide_equality_when_given(pool):
    pool.submit("a", ["r1", "r2"], keys=[1, 1])
    assert pool.scheduler.deduplicated == 1


def test_a_finished_request_is_forgotten_so_an_equal_one_runs_again(pool):
    pool.submit("a", ["x"])
    pool.finish(0)
    pool.submit("a", ["x"])
    assert pool.scheduler.deduplicated == 0
    assert pool.requests(0) == [["x"]]


# -- dispatch ------------------------------------------------------------------------------


def test_a_batch_goes_only_to_a_worker_that_holds_none_while_one_is_idle():
    pool = Pool(workers=2)
    pool.connect("a")
    pool.submit("a", ["x"])
    assert pool.requests(0) == [["x"]] and pool.requests(1) == []
    pool.submit("a", ["y"])
    assert pool.requests(1) == [["y"]]  # the idle worker, not behind x


def test_busy_workers_get_their_next_batch_ahead_while_work_is_queued(pool):
    pool.submit("a", [f"r{i}" for i in range(100)])
    assert [len(pool.batches[w]) for w in (0, 1)] == [2, 2]


def test_the_first_batches_stay_small_until_requests_were_timed():
    pool = Pool(workers=2, timed=0)
    pool.connect("a")
    pool.submit("a", ["warm-up"])
    pool.finish(0, seconds=0.0001)  # a cheap warm-up teaches "cheap"
    pool.submit("a", ["slow1", "slow2", "slow3", "slow4"])
    # One request timed so far: one per batch, whatever it cost.
    assert pool.requests(0) == [["slow1"], ["slow3"]]
    assert pool.requests(1) == [["slow2"], ["slow4"]]


def test_a_request_whose_worker_died_goes_alone_to_a_worker_holding_nothing_else(pool):
    pool.submit("a", ["p", "q"])
    assert pool.requests(0) == [["p"]] and pool.requests(1) == [["q"]]
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
    pool.batches[0].clear()
    assert pool.requests(1) == [["q"]]  # p waits: it may not queue behind q
    pool.finish(1)
    assert pool.requests(1) == [["p"]]  # alone
    pool.submit("a", ["r"])
    assert pool.requests(1) == [["p"]]  # and nothing is sent behind it
    pool.act(pool.scheduler.worker_back(0))
    assert pool.requests(0) == [["r"]]


# -- take-back -----------------------------------------------------------------------------


def test_an_idle_worker_takes_a_batch_waiting_behind_another_whole(pool):
    pool.submit("a", [f"r{i}" for i in range(40)])
    running, behind = pool.batches[0]
    pool.finish(0, count=len(running.requests) - 1, final=False)  # on its last request
    while pool.batches[1]:
        pool.finish(1)  # worker 1 runs out of work
    assert pool.take_backs == [TakeBack(0, behind.batch_id, list(range(len(behind.requests))))]
    pool.act(pool.scheduler.taken_back(behind.batch_id, pool.take_backs[0].positions, late=[]))
    assert pool.requests(1) == [behind.requests]  # the idle worker runs them now


def test_a_hung_head_frees_every_unstarted_request_of_its_batch():
    pool = Pool(workers=2)
    pool.connect("a")
    ids = pool.submit("a", ["hang"] + [f"r{i}" for i in range(19)])
    hung = pool.batches[0][0]
    assert hung.requests[0] == "hang" and len(hung.requests) > 1
    for _ in range(100):  # worker 1 keeps working; worker 0 never gets past "hang"
        if pool.batches[1]:
            pool.finish(1)
        elif pool.take_backs:
            take = pool.take_backs.pop(0)
            late = [0] if take.batch_id == hung.batch_id else []
            pool.act(pool.scheduler.taken_back(take.batch_id, take.positions, late))
        else:
            break
    done = pool.results("a")
    assert set(done) == set(ids) - {ids[0]}  # all but the hung one finished
    assert pool.scheduler.running == 1


def test_a_running_batch_gives_back_the_back_half_of_its_unstarted_tail(pool):
    pool.submit("a", [f"r{i}" for i in range(16)])
    running, _ = pool.batches[0]
    assert len(running.requests) == 8
    pool.finish(0, count=1, final=False)  # running: position 0 reported, 1 under way
    while pool.batches[1]:
        pool.finish(1)
    # Unstarted: 2..7 here, against the 2 of the batch behind it: the back half of 2..7.
    assert pool.take_backs == [TakeBack(0, running.batch_id, [5, 6, 7])]


def test_a_take_back_whose_positions_had_started_moves_nothing(pool):
    pool.submit("a", ["x", "y"])
    batch = pool.batches[0][0]
    pool.act(pool.scheduler.taken_back(batch.batch_id, [0], late=[0]))
    assert pool.scheduler.queued == 0


# -- outcomes ------------------------------------------------------------------------------


def test_outcomes_of_a_chunk_reach_clients_before_the_batch_ends(pool):
    ids = pool.submit("a", [f"r{i}" for i in range(10)])
    batch = pool.batches[0][0]
    pool.finish(0, count=2, final=False)
    assert pool.results("a") == {ids[0]: f"{batch.requests[0]}!", ids[1]: f"{batch.requests[1]}!"}


def test_a_failed_position_fails_only_its_own_request():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["good", "bad"])
    batch = pool.batches[0][0]
    chunk = OutcomeChunk(batch.batch_id, [0, 1], ["ok", None], {1: "boom"}, 0.01, final=True)
    pool.act(pool.scheduler.chunk(0, chunk))
    (news,) = pool.mail("a")
    assert news.ids == ids and news.results == ["ok", None] and news.errors == {1: "boom"}


def test_failed_counts_each_distinct_request_that_raised_or_that_raypw_gave_up_on():
    pool = Pool(workers=1, max_retries=0)
    pool.connect("a")
    pool.connect("b")
    pool.submit("a", ["good", "bad"])
    pool.submit("b", ["bad"])  # joins a's: one distinct request, two waiters
    batch = pool.batches[0][0]
    chunk = OutcomeChunk(batch.batch_id, [0, 1], ["ok", None], {1: "boom"}, 0.01, final=True)
    pool.act(pool.scheduler.chunk(0, chunk))
    assert (pool.scheduler.processed, pool.scheduler.failed) == (2, 1)
    pool.submit("a", ["poison"])
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))  # no retry left
    pool.batches[0].clear()
    assert isinstance(pool.results("a").popitem()[1], WorkerDiedError)
    assert (pool.scheduler.processed, pool.scheduler.failed) == (2, 2)


def test_waited_is_the_time_since_a_chunks_first_request_first_reached_the_scheduler():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.clock.now = 1.0
    pool.submit("a", ["x", "y"])
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))  # sent again later
    pool.batches[0].clear()
    pool.clock.now = 2.0
    pool.act(pool.scheduler.worker_back(0))
    batch = pool.batches[0][0]
    pool.clock.now = 3.5
    chunk = OutcomeChunk(batch.batch_id, [0], ["x!"], None, 0.001, final=False)
    assert pool.scheduler.waited(chunk) == 2.5  # from the first submit, not the retry
    pool.act(pool.scheduler.chunk(0, chunk))
    pool.finish(0)
    assert pool.scheduler.waited(chunk) is None  # its batch is over
    assert pool.scheduler.waited(OutcomeChunk(batch.batch_id, [], [], None, 0.0)) is None


def test_positions_a_batch_ended_without_running_go_back_to_the_queue():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["x", "y", "z"])
    assert pool.requests(0) == [["x", "y", "z"]]
    pool.end_skipping(0, 0, skipped=(2,))  # z never ran, and nobody aborted it
    assert pool.requests(0) == [["z"]]
    pool.finish(0)
    assert set(pool.results("a")) == set(ids)


# -- retries -------------------------------------------------------------------------------


def test_a_death_is_charged_to_every_request_the_worker_held_and_they_go_again(pool):
    ids = pool.submit("a", ["x"])
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
    pool.batches[0].clear()
    assert pool.requests(1) == [["x"]]
    pool.finish(1)
    assert pool.results("a") == {ids[0]: "x!"}


def test_a_request_past_its_retry_budget_fails_with_worker_died_error():
    pool = Pool(workers=1, max_retries=1)
    pool.connect("a")
    ids = pool.submit("a", ["poison"])
    for _ in range(2):
        pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
        pool.batches[0].clear()
        pool.act(pool.scheduler.worker_back(0))
    (error,) = pool.results("a").values()
    assert isinstance(error, WorkerDiedError) and error.attempts == 2
    assert pool.requests(0) == []
    assert ids


def test_when_no_worker_is_left_every_queued_request_fails():
    pool = Pool(workers=1, max_retries=5)
    pool.connect("a")
    ids = pool.submit("a", [f"r{i}" for i in range(50)])
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))  # all charged once
    pool.batches[0].clear()
    pool.act(pool.scheduler.worker_gone(0, RuntimeError("gone")))
    failed = pool.results("a")
    assert set(failed) == set(ids)
    assert all(isinstance(e, WorkerDiedError) for e in failed.values())


def test_outcomes_of_a_batch_whose_worker_died_are_ignored(pool):
    pool.submit("a", ["x"])
    batch = pool.batches[0][0]
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
    chunk = OutcomeChunk(batch.batch_id, [0], ["late"], None, 0.01, final=True)
    assert pool.scheduler.chunk(0, chunk) == []


# -- aborts --------------------------------------------------------------------------------


def test_an_aborted_queued_request_is_never_dispatched():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["x"] + [f"r{i}" for i in range(100)])
    pool.act(pool.scheduler.abort(pool.aborting("a", [ids[-1]])))
    while pool.batches[0]:
        pool.finish(0)
    sent = [r for batch in pool.requests(0) for r in batch]
    assert "r99" not in sent
    assert ids[-1] not in pool.results("a")


def test_aborting_a_dispatched_request_asks_its_worker_to_skip_it(pool):
    ids = pool.submit("a", ["x", "y"])
    batch = pool.batches[0][0]
    pool.act(pool.scheduler.abort(pool.aborting("a", [ids[0]])))
    assert pool.skips == [Skip(0, batch.batch_id, [0])]


def test_a_batch_nobody_waits_for_is_cancelled_once_what_runs_is_unwanted(pool):
    ids = pool.submit("a", ["x"])
    batch = pool.batches[0][0]
    pool.act(pool.scheduler.abort(pool.aborting("a", ids)))
    pool.act(pool.scheduler.skipped(batch.batch_id, late=[0]))
    assert pool.cancels == [Cancel(0, batch.batch_id)]


def test_abort_keeps_a_request_another_client_still_waits_for(pool):
    pool.connect("b")
    a_ids = pool.submit("a", ["x"])
    b_ids = pool.submit("b", ["x"])
    pool.act(pool.scheduler.abort(pool.aborting("a", a_ids)))
    assert pool.skips == []
    pool.finish(0)
    assert pool.results("b") == {b_ids[0]: "x!"}


def test_an_abort_that_overtakes_its_submit_still_drops_the_request():
    pool = Pool(workers=1)
    pool.connect("a")
    epoch = pool.epochs["a"]
    # Ids 1-2 are submitted; the abort of 3 arrives before the submit carrying 3.
    pool.act(pool.scheduler.submit(Submit("a", epoch, 1, [1, 2], ["x", "y"])))
    pool.act(pool.scheduler.abort(Abort("a", epoch, [3], [2])))
    pool.act(pool.scheduler.submit(Submit("a", epoch, 2, [3], ["z"])))
    sent = [r for batch in pool.requests(0) for r in batch]
    assert "z" not in sent


def test_an_abort_between_two_out_of_order_submits_is_not_taken_as_finished():
    pool = Pool(workers=1)
    pool.connect("a")
    epoch = pool.epochs["a"]
    # Submits 1 and 3 landed, submit 2 (carrying id 2) not yet: an abort of 2 must hold.
    pool.act(pool.scheduler.submit(Submit("a", epoch, 1, [1], ["x"])))
    pool.act(pool.scheduler.submit(Submit("a", epoch, 3, [3], ["z"])))
    pool.act(pool.scheduler.abort(Abort("a", epoch, [2], [2])))
    pool.act(pool.scheduler.submit(Submit("a", epoch, 2, [2], ["y"])))
    while pool.batches[0]:
        pool.finish(0)
    sent = [r for batch in pool.requests(0) for r in batch]
    assert "y" not in sent and 2 not in pool.results("a")


# -- aborts of unstarted requests only (raypw.compat) --------------------------------------


def _abort_unstarted(pool: Pool, client: str, ids: list[int]):
    return pool.scheduler.abort_unstarted(pool.aborting(client, ids))


def test_abort_unstarted_withdraws_a_queued_request_at_once():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["x"] + [f"r{i}" for i in range(100)])
    assert _abort_unstarted(pool, "a", [ids[-1]]) == ([ids[-1]], [])
    while pool.batches[0]:
        pool.finish(0)
    assert "r99" not in [r for batch in pool.requests(0) for r in batch]
    assert ids[-1] not in pool.results("a")


def test_abort_unstarted_of_a_request_whose_submit_is_on_the_way_withdraws_it():
    pool = Pool(workers=1)
    pool.connect("a")
    epoch = pool.epochs["a"]
    pool.act(pool.scheduler.submit(Submit("a", epoch, 1, [1], ["x"])))
    assert pool.scheduler.abort_unstarted(Abort("a", epoch, [2], [2])) == ([2], [])
    pool.act(pool.scheduler.submit(Submit("a", epoch, 2, [2], ["y"])))
    assert "y" not in [r for batch in pool.requests(0) for r in batch]


def test_abort_unstarted_asks_the_worker_and_withdraws_what_it_skipped():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["x", "y"])
    batch = pool.batches[0][0]
    withdrawn, asks = _abort_unstarted(pool, "a", [ids[1]])
    assert withdrawn == [] and asks == [SkipUnstarted(0, batch.batch_id, [1], [("a", ids[1])])]
    assert pool.scheduler.skipped_unstarted(asks[0], late=[]) == ([ids[1]], [])
    pool.end_skipping(0, 0, skipped=(1,))
    assert pool.results("a") == {ids[0]: "x!"}


def test_abort_unstarted_of_a_started_request_lets_its_result_through():
    pool = Pool(workers=1)
    pool.connect("a")
    ids = pool.submit("a", ["x", "y"])
    batch = pool.batches[0][0]
    withdrawn, asks = _abort_unstarted(pool, "a", [ids[0]])
    assert withdrawn == []
    assert pool.scheduler.skipped_unstarted(asks[0], late=[0]) == ([], [])
    pool.finish(0)
    assert pool.results("a") == {ids[0]: "x!", ids[1]: "y!"}
    assert pool.skips == [] and pool.cancels == [] and batch.batch_id not in pool.scheduler._batches


def test_abort_unstarted_of_a_reported_position_does_not_ask(pool):
    ids = pool.submit("a", ["x", "y"])
    pool.finish(0, count=1, final=False)
    assert _abort_unstarted(pool, "a", [ids[0]]) == ([], [])


def test_an_outcome_before_the_workers_answer_is_delivered(pool):
    ids = pool.submit("a", ["x"])
    _, asks = _abort_unstarted(pool, "a", ids)
    pool.finish(0)  # it had started: its outcome overtakes the worker's answer
    assert pool.scheduler.skipped_unstarted(asks[0], late=[0]) == ([], [])
    assert pool.results("a") == {ids[0]: "x!"}


def test_a_batch_that_ends_before_the_workers_answer_still_counts_the_skip(pool):
    ids = pool.submit("a", ["x", "y"])
    _, asks = _abort_unstarted(pool, "a", [ids[1]])
    pool.end_skipping(0, 0, skipped=(1,))  # the final chunk overtakes the answer
    assert pool.scheduler.queued == 0  # not requeued: the abort holds
    assert pool.scheduler.skipped_unstarted(asks[0], late=[]) == ([ids[1]], [])
    assert pool.results("a") == {ids[0]: "x!"}


def test_abort_unstarted_follows_a_request_requeued_after_its_worker_died(pool):
    ids = pool.submit("a", ["x"])
    _, asks = _abort_unstarted(pool, "a", ids)
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
    pool.batches[0].clear()
    moved = pool.batches[1][0]  # requeued and sent to the other worker
    withdrawn, again = pool.scheduler.skipped_unstarted(asks[0], late=[0])
    assert withdrawn == [] and again == [SkipUnstarted(1, moved.batch_id, [0], [("a", ids[0])])]
    assert pool.scheduler.skipped_unstarted(again[0], late=[]) == (ids, [])


def test_abort_unstarted_leaves_a_dispatched_request_another_client_waits_for(pool):
    pool.connect("b")
    a_ids = pool.submit("a", ["x"])
    b_ids = pool.submit("b", ["x"])
    assert _abort_unstarted(pool, "a", a_ids) == ([], [])
    pool.finish(0)
    assert pool.results("a") == {a_ids[0]: "x!"}
    assert pool.results("b") == {b_ids[0]: "x!"}


def test_a_position_given_back_unstarted_settles_a_waiting_abort(pool):
    ids = pool.submit("a", ["x", "y", "z", "w"])
    batch = pool.batches[0][0]
    assert batch.requests == ["x", "y"]
    _, asks = _abort_unstarted(pool, "a", [ids[1]])
    pool.finish(1)  # worker 1 is idle: it asks for worker 0's unstarted batch back
    assert pool.take_backs == [TakeBack(0, batch.batch_id, [0, 1])]
    # The take-back is answered first: "x" had started, "y" comes back unstarted.
    pool.act(pool.scheduler.taken_back(batch.batch_id, [0, 1], late=[0]))
    assert pool.scheduler.skipped_unstarted(asks[0], late=[]) == ([ids[1]], [])
    assert "y" not in [r for b in pool.requests(1) for r in b]  # not handed on
    assert pool.scheduler.queued == 0


# -- clients -------------------------------------------------------------------------------


def test_a_submit_after_its_client_disconnected_is_dropped(pool):
    epoch = pool.epochs["a"]
    pool.act(pool.scheduler.disconnect("a"))
    pool.act(pool.scheduler.submit(Submit("a", epoch, 1, [1], ["ghost"])))
    assert pool.scheduler.queued == 0 and pool.requests(0) == []
    assert pool.scheduler.clients == 0
    assert isinstance(pool.mail("a")[0], Forgotten)


def test_a_submit_of_an_older_epoch_is_dropped(pool):
    old = pool.epochs["a"]
    pool.connect("a")
    pool.act(pool.scheduler.submit(Submit("a", old, 1, [1], ["stale"])))
    assert pool.scheduler.queued == 0


def test_a_silent_client_is_named_and_forgetting_it_withdraws_its_requests(pool):
    pool.submit("a", ["x"])
    pool.clock.now += 100
    assert pool.scheduler.silent_clients(timeout=60) == ["a"]
    pool.act(pool.scheduler.disconnect("a"))
    assert pool.skips  # its dispatched request is withdrawn


def test_a_polling_client_is_never_silent(pool):
    pool.scheduler.polling("a", +1)
    pool.clock.now += 100
    assert pool.scheduler.silent_clients(timeout=60) == []


def test_a_client_that_leaves_keeps_its_requests_until_they_finish(pool):
    pool.submit("a", ["x"])
    pool.scheduler.leave("a")
    assert pool.requests(0) == [["x"]]
    pool.finish(0)
    assert pool.scheduler.clients == 0
    assert "a" not in pool.scheduler._clients


def timed_pool(workers: int, seconds_per_request: float) -> Pool:
    """A pool whose workers have reported requests of ``seconds_per_request``."""
    pool = Pool(workers=workers)
    pool.connect("a")
    pool.submit("a", [f"r{i}" for i in range(10)])
    pool.finish(0, seconds=seconds_per_request)
    return pool


def test_cheap_outcomes_leave_every_millisecond_on_a_small_pool_and_less_often_on_a_wide_one():
    assert Pool(workers=2).scheduler.chunk_seconds == 0.001  # nothing timed yet
    assert timed_pool(2, 0.0001).scheduler.chunk_seconds == 0.001
    assert timed_pool(1000, 0.0001).scheduler.chunk_seconds == pytest.approx(0.5)


def test_a_chunk_gathers_a_few_requests_worth_of_outcomes_up_to_twenty_milliseconds():
    assert timed_pool(2, 0.001).scheduler.chunk_seconds == pytest.approx(0.004)
    assert timed_pool(2, 0.005).scheduler.chunk_seconds == pytest.approx(0.02)
    assert timed_pool(2, 0.5).scheduler.chunk_seconds == pytest.approx(0.02)


def test_work_held_by_a_stalled_worker_goes_to_others_before_newer_queued_work():
    pool = Pool(workers=2)
    pool.connect("a")
    pool.submit("a", ["hang"] + [f"behind{i}" for i in range(9)])
    hung = pool.batches[0][0]
    assert hung.requests[0] == "hang"
    pool.submit("a", [f"newer{i}" for i in range(200)])  # the queue never runs dry
    pool.clock.now += 1.0  # worker 0 reports nothing for a second: stalled on "hang"
    pool.finish(1)  # worker 1 has room for its next batch
    takes = [t for t in pool.take_backs if t.worker == 0]
    assert takes and takes[0].batch_id == hung.batch_id
    assert takes[0].positions == list(range(len(hung.requests)))  # all that has not started
    pool.act(pool.scheduler.taken_back(hung.batch_id, takes[0].positions, late=[0]))
    sent_to_1 = [r for batch in pool.requests(1) for r in batch]
    assert [r for r in sent_to_1 if r.startswith("behind")]  # before any newer request
    first_behind = sent_to_1.index(next(r for r in sent_to_1 if r.startswith("behind")))
    assert not any(r.startswith("newer") for r in sent_to_1[:first_behind])


def test_requests_a_batch_ended_without_running_go_back_in_their_order():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["x", "y", "z", "w"])
    assert pool.requests(0) == [["x", "y", "z", "w"]]
    pool.end_skipping(0, 0, skipped=(1, 2))
    assert pool.requests(0) == [["y", "z"]]


# -- deadlines -----------------------------------------------------------------------------


def test_a_queued_request_past_its_deadline_times_out_and_is_never_dispatched():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])  # sent ahead, behind busy: the queue is next
    (late,) = pool.submit("a", ["late"], timeout=1.0)
    assert pool.scheduler.queued == 1 and pool.scheduler.next_timer() == 1.0
    pool.later(1.5)
    assert pool.results("a") == {late: "timed out"}
    pool.finish(0)
    pool.finish(0)
    assert pool.requests(0) == [] and pool.scheduler.queued == 0


def test_nothing_is_dispatched_past_its_deadline_even_before_the_timer_runs():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])
    (late,) = pool.submit("a", ["late"], timeout=1.0)
    pool.clock.now = 2.0  # the timer has not fired yet; a batch ends
    pool.finish(0)
    assert pool.requests(0) == [["ahead"]]
    assert pool.results("a")[late] == "timed out"


def test_a_dispatched_request_past_its_deadline_is_skipped_and_the_rest_go_back_uncharged():
    pool = Pool(workers=1)
    pool.connect("a")
    (busy,) = pool.submit("a", ["busy"])
    ids = pool.submit("a", ["late", "mate1", "mate2"], timeout=[1.0, None, None])
    behind = pool.batches[0][1]
    assert behind.requests == ["late", "mate1", "mate2"]
    pool.later(1.5)
    assert pool.mail("a") == []  # told once the worker agreed not to start it
    assert pool.expires == [Expire(0, behind.batch_id, [0, 1, 2])]
    pool.act(pool.scheduler.expired(behind.batch_id, [0, 1, 2], late=[]))
    assert pool.mail("a") == [TimedOut([ids[0]])]
    pool.finish(0)  # busy ends: the mates come back to the worker, "late" does not
    pool.end_skipping(0, 0, skipped=(0, 1, 2))  # the batch behind, having skipped all three
    assert pool.requests(0) == [["mate1", "mate2"]]
    pool.finish(0)
    assert pool.results("a") == {ids[1]: "mate1!", ids[2]: "mate2!", busy: "busy!"}
    assert pool.kills == [] and pool.scheduler.worker_restarts == 0


def test_a_request_held_by_a_worker_is_told_timed_out_only_once_its_worker_will_not_start_it():
    # Told sooner, a program could see the timeout, free the worker (a gate, a lock) and
    # watch the request start before the worker had the Expire.
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    (late,) = pool.submit("a", ["late"], timeout=1.0)
    behind = pool.batches[0][1]
    pool.later(1.5)
    assert pool.mail("a") == [] and pool.expires == [Expire(0, behind.batch_id, [0])]
    pool.act(pool.scheduler.expired(behind.batch_id, [0], late=[]))
    assert pool.mail("a") == [TimedOut([late])]


def test_a_timed_out_request_is_told_when_its_batch_ends_before_the_worker_answers():
    pool = Pool(workers=1)
    pool.connect("a")
    (late,) = pool.submit("a", ["late"], timeout=1.0)
    batch = pool.batches[0][0]
    pool.later(1.5)
    assert pool.mail("a") == []
    pool.finish(0)  # it ran and ended before the Expire reached the worker
    assert pool.results("a") == {late: "timed out"}
    pool.act(pool.scheduler.expired(batch.batch_id, [0], late=[0]))  # the late answer
    assert pool.mail("a") == [] and pool.cancels == []


def test_a_request_running_at_its_deadline_is_cancelled_then_its_worker_killed_after_grace():
    pool = Pool(workers=1, grace=5.0)
    pool.connect("a")
    ids = pool.submit("a", ["stuck", "mate1", "mate2"], timeout=None)
    pool.scheduler.take_mail("a")
    pool.connect("b")
    (stuck,) = pool.submit("b", ["stuck"], timeout=1.0)  # shares the running request
    pool.act(pool.scheduler.abort(pool.aborting("a", [ids[0]])))
    batch = pool.batches[0][0]
    pool.later(1.5)
    assert pool.expires == [Expire(0, batch.batch_id, [0, 1, 2])]
    pool.act(pool.scheduler.expired(batch.batch_id, [0, 1, 2], late=[0]))  # it runs
    assert pool.results("b") == {stuck: "timed out"}
    assert pool.cancels == [Cancel(0, batch.batch_id)]
    assert pool.scheduler.next_timer() == 6.5
    pool.later(4.0)
    assert pool.kills == []
    pool.later(1.0)
    assert pool.kills == [Kill(0)]
    assert pool.scheduler.workers_up == 0 and pool.scheduler.worker_restarts == 1
    pool.act(pool.scheduler.worker_back(0))
    assert pool.requests(0) == [["mate1", "mate2"]]
    pool.finish(0)
    assert pool.results("a") == {ids[1]: "mate1!", ids[2]: "mate2!"}


def test_a_cancelled_request_that_returns_within_the_grace_period_keeps_its_worker():
    pool = Pool(workers=1, grace=5.0)
    pool.connect("a")
    (stuck,) = pool.submit("a", ["stuck"], timeout=1.0)
    batch = pool.batches[0][0]
    pool.later(1.5)
    pool.act(pool.scheduler.expired(batch.batch_id, [0], late=[0]))
    assert pool.cancels == [Cancel(0, batch.batch_id)]
    pool.finish(0)  # process() saw is_canceled() and returned
    pool.later(10.0)
    assert pool.kills == [] and pool.scheduler.workers_up == 1
    assert pool.results("a") == {stuck: "timed out"}  # its late result is not delivered


def test_a_killed_worker_charges_no_retry_to_the_requests_it_held():
    pool = Pool(workers=1, max_retries=0, grace=1.0)
    pool.connect("a")
    (stuck,) = pool.submit("a", ["stuck"], timeout=1.0)
    (mate,) = pool.submit("a", ["mate"])  # sent ahead, behind stuck
    batch = pool.batches[0][0]
    pool.later(1.5)
    pool.act(pool.scheduler.expired(batch.batch_id, [0], late=[0]))
    pool.later(1.0)
    assert pool.kills == [Kill(0)]
    pool.act(pool.scheduler.worker_back(0))
    pool.finish(0)
    assert pool.results("a") == {stuck: "timed out", mate: "mate!"}


def test_a_timed_out_request_is_not_retried_when_its_worker_dies():
    pool = Pool(workers=1)
    pool.connect("a")
    (late,) = pool.submit("a", ["late"], timeout=1.0)
    pool.later(1.5)
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))  # before it answered
    assert pool.results("a") == {late: "timed out"}
    pool.batches[0].clear()
    pool.act(pool.scheduler.worker_back(0))
    assert pool.requests(0) == [] and pool.mail("a") == []


def test_equal_requests_keep_each_waiters_own_deadline_and_run_until_the_last():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.connect("b")
    pool.connect("c")
    (a_id,) = pool.submit("a", ["x"], timeout=1.0)
    (b_id,) = pool.submit("b", ["x"], timeout=3.0)
    (c_id,) = pool.submit("c", ["x"])  # no deadline
    pool.later(2.0)
    assert pool.results("a") == {a_id: "timed out"}
    assert pool.expires == []  # others still wait for it
    pool.later(2.0)
    assert pool.results("b") == {b_id: "timed out"}
    assert pool.expires == []
    pool.finish(0)
    assert pool.results("c") == {c_id: "x!"}


def test_the_work_of_equal_requests_stops_at_the_latest_deadline():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.connect("b")
    pool.submit("a", ["x"], timeout=1.0)
    pool.submit("b", ["x"], timeout=3.0)
    batch = pool.batches[0][0]
    pool.later(2.0)
    assert pool.expires == []
    pool.later(2.0)
    assert pool.expires == [Expire(0, batch.batch_id, [0])]


def test_a_request_finished_before_its_deadline_is_not_timed_out(pool):
    (early,) = pool.submit("a", ["x"], timeout=1.0)
    pool.finish(0)
    pool.later(5.0)
    assert pool.results("a") == {early: "x!"}
    assert pool.scheduler.timed_out == 0 and pool.scheduler.next_timer() is None


def test_the_deadlines_of_finished_requests_do_not_pile_up():
    pool = Pool(workers=1)
    pool.connect("a")
    for _ in range(5):
        pool.submit("a", [f"r{i}" for i in range(3000)], timeout=3600.0)
        while pool.batches[0]:
            pool.finish(0)
    # At most twice what was pending at once (3000), not the 15000 ever queued.
    assert len(pool.scheduler._deadlines) <= 6000


def test_a_request_aborted_before_its_submit_landed_gets_no_deadline():
    pool = Pool(workers=1)
    pool.connect("a")
    epoch = pool.epochs["a"]
    pool.act(pool.scheduler.submit(Submit("a", epoch, 1, [1], ["busy"])))
    pool.act(pool.scheduler.submit(Submit("a", epoch, 2, [2], ["ahead"])))  # the queue is next
    pool.act(pool.scheduler.abort(Abort("a", epoch, [4], [3])))  # overtakes submit 3
    submit = Submit("a", epoch, 3, [3, 4, 5], ["x", "y", "z"], timeouts=[1.0, 1.0, None])
    pool.act(pool.scheduler.submit(submit))
    assert len(pool.scheduler._deadlines) == 1  # only 3: 4 was aborted, 5 has none
    pool.later(1.5)
    assert pool.results("a") == {3: "timed out"}


def test_no_batch_is_sent_ahead_to_a_worker_running_a_request_past_its_deadline():
    pool = Pool(workers=1, grace=5.0)
    pool.connect("a")
    pool.submit("a", ["stuck"], timeout=1.0)
    batch = pool.batches[0][0]
    pool.later(1.5)
    pool.act(pool.scheduler.expired(batch.batch_id, [0], late=[0]))
    (later,) = pool.submit("a", ["later"])
    assert pool.requests(0) == [["stuck"]] and pool.scheduler.queued == 1
    pool.later(5.0)
    assert pool.kills == [Kill(0)]
    pool.act(pool.scheduler.worker_back(0))
    pool.finish(0)
    assert pool.results("a")[later] == "later!"


@pytest.mark.parametrize("take_back_answers_first", [True, False])
def test_a_take_back_and_an_expiry_of_the_same_batch_move_each_request_once(
    take_back_answers_first,
):
    pool = Pool(workers=2)
    pool.connect("a")
    pool.connect("b")
    ids = pool.submit("a", [f"r{i}" for i in range(40)])
    running, behind = pool.batches[0]
    victim = behind.requests[1]
    (b_id,) = pool.submit("b", [victim], timeout=1.0)  # joins it, with a deadline
    pool.act(pool.scheduler.abort(pool.aborting("a", [ids[int(victim[1:])]])))
    pool.finish(0, count=len(running.requests) - 1, final=False)  # on its last request
    while pool.batches[1]:
        pool.finish(1)  # worker 1 runs out of work and asks for worker 0's batch behind
    (take,) = pool.take_backs
    assert take.batch_id == behind.batch_id
    pool.later(1.5)
    (expire,) = pool.expires
    assert expire.batch_id == behind.batch_id and behind.requests[expire.positions[0]] == victim
    answers = [
        lambda: pool.scheduler.taken_back(take.batch_id, take.positions, late=[]),
        lambda: pool.scheduler.expired(expire.batch_id, expire.positions, late=[]),
    ]
    for answer in answers if take_back_answers_first else answers[::-1]:
        pool.act(answer())
    assert pool.results("b") == {b_id: "timed out"}
    moved = [r for batch in pool.batches[1] for r in batch.requests]
    waiting = [item.request for item in pool.scheduler._queue if item.subscribers]
    assert sorted(moved + waiting) == sorted(r for r in behind.requests if r != victim)
    assert pool.scheduler.queued == len(waiting)


def test_a_request_of_a_program_that_left_still_frees_its_worker_at_its_deadline():
    pool = Pool(workers=1, grace=1.0)
    pool.connect("a")
    pool.submit("a", ["stuck"], timeout=1.0)
    batch = pool.batches[0][0]
    pool.scheduler.leave("a")
    pool.later(1.5)
    assert pool.expires == [Expire(0, batch.batch_id, [0])]
    pool.act(pool.scheduler.expired(batch.batch_id, [0], late=[0]))
    pool.later(1.0)
    assert pool.kills == [Kill(0)] and pool.scheduler.clients == 0


# -- priorities ----------------------------------------------------------------------------


def test_higher_priority_requests_are_dispatched_first_and_in_order_within_a_priority():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])  # sent ahead, behind busy
    pool.submit("a", ["l1", "l2"])
    pool.submit("a", ["m1"], priority=1)
    pool.submit("a", ["h1", "h2"], priority=5)
    pool.submit("a", ["m2"], priority=1)
    pool.submit("a", ["n1"], priority=-1)
    for take in pool.take_backs:  # "ahead" is of a lower priority than what waits
        pool.give_back(take)
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == ["busy", "h1", "h2", "m1", "m2", "ahead", "l1", "l2", "n1"]


def test_a_higher_priority_request_overtakes_unstarted_requests_sent_ahead_to_a_worker():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["l1", "l2"])  # sent ahead, behind busy
    pool.submit("a", ["l3"])
    pool.submit("a", ["h1", "h2"], priority=5)
    behind = pool.batches[0][1]
    (take,) = pool.take_backs
    assert take == TakeBack(0, behind.batch_id, [0, 1])  # not busy: it runs
    pool.give_back(take)
    pool.finish(0)  # busy ends; the next batch goes behind the emptied one
    pool.finish(0)
    assert pool.requests(0) == [["h1", "h2", "l1", "l2", "l3"]]  # l1, l2 kept their place


@pytest.mark.parametrize(
    ("each", "taken"), [(OVERTAKE_SECONDS / 4, False), (OVERTAKE_SECONDS, True)]
)
def test_lower_priority_work_sent_ahead_is_taken_back_only_if_it_would_hold_the_worker_long(
    each: float, taken: bool
):
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["l1", "l2"])  # sent ahead, behind busy
    pool.scheduler._sizer.typical_seconds = each  # l1 and l2 take half, or twice, the limit
    pool.submit("a", ["h"], priority=5)
    assert len(pool.take_backs) == taken
    if taken:
        pool.give_back(pool.take_backs[0])
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == (["busy", "h", "l1", "l2"] if taken else ["busy", "l1", "l2", "h"])


def test_a_request_that_began_before_the_worker_was_asked_back_stays_there():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["l1", "l2"])
    pool.submit("a", ["h"], priority=1)
    (take,) = pool.take_backs
    pool.give_back(take, late=[0])  # busy had ended and l1 begun
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == ["busy", "l1", "h", "l2"]


def test_an_equal_request_of_a_higher_priority_raises_the_pending_one_which_runs_once():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.connect("b")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])
    low = pool.submit("a", ["x", "y", "shared"])
    (high,) = pool.submit("b", ["shared"], priority=3)
    assert pool.scheduler.deduplicated == 1
    for take in pool.take_backs:
        pool.give_back(take)
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == ["busy", "shared", "ahead", "x", "y"]
    assert pool.results("a")[low[2]] == "shared!" and pool.results("b")[high] == "shared!"


def test_a_lower_priority_equal_request_does_not_lower_the_pending_one():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])
    pool.submit("a", ["x"])
    pool.submit("a", ["shared"], priority=2)
    pool.submit("a", ["shared"], priority=-5)
    for take in pool.take_backs:
        pool.give_back(take)
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == ["busy", "shared", "ahead", "x"]


def test_requests_without_a_priority_ask_no_worker_for_work_back():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["l1", "l2"])
    pool.submit("a", [f"r{i}" for i in range(50)])
    assert pool.take_backs == []


# -- the pool's size -----------------------------------------------------------------------


def test_a_grown_pool_gives_work_to_a_new_worker_once_it_is_up():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.submit("a", ["busy"])
    pool.submit("a", ["ahead"])
    pool.submit("a", [f"r{i}" for i in range(5)])
    (new,) = pool.scheduler.add_workers(1)
    pool.batches[new] = []
    assert new == 1 and pool.scheduler.workers == 2
    assert pool.batches[new] == []  # not up yet
    pool.act(pool.scheduler.worker_back(new))
    assert pool.requests(new) and pool.requests(new)[0][0] == "r0"


def test_shrinking_retires_idle_workers_first():
    pool = Pool(workers=3)
    pool.connect("a")
    pool.submit("a", ["busy"])  # on worker 0; 1 and 2 idle
    pool.act(pool.scheduler.retire_workers(2))
    assert sorted(pool.retired) == [1, 2] and pool.scheduler.workers == 1
    pool.submit("a", ["later"])
    assert pool.requests(1) == [] and pool.requests(2) == []


def test_a_busy_worker_retired_finishes_what_it_started_and_gives_back_the_rest():
    pool = Pool(workers=2)
    pool.connect("a")
    ids = pool.submit("a", [f"r{i}" for i in range(8)])
    pool.submit("a", [f"s{i}" for i in range(8)])
    running, behind = pool.batches[1]
    assert len(running.requests) == 2
    pool.finish(1, count=1, final=False)  # worker 1 is on the last request of its batch
    pool.act(pool.scheduler.retire_workers(1))
    (take,) = pool.take_backs  # what it has surely not started: the batch sent ahead
    assert take == TakeBack(1, behind.batch_id, [0])
    pool.give_back(take)
    pool.finish(1)
    assert pool.retired == []  # still holds the batch it gave back, until that ends
    pool.finish(1)
    assert pool.retired == [1] and pool.scheduler.workers == 1
    while pool.batches[0]:
        pool.finish(0)
    results = pool.results("a")
    assert all(results.get(i) is not None for i in ids)  # none lost
    assert sorted(pool.ran) == sorted(set(pool.ran))  # none run twice


def test_the_pool_never_shrinks_below_one_worker():
    pool = Pool(workers=2)
    pool.act(pool.scheduler.retire_workers(5))
    assert len(pool.retired) == 1 and pool.scheduler.workers == 1


def test_a_retired_workers_slot_is_used_again_when_the_pool_grows():
    pool = Pool(workers=2)
    pool.act(pool.scheduler.retire_workers(1))
    (gone,) = pool.retired
    assert pool.scheduler.add_workers(2) == [gone, 2]


def test_a_worker_that_processed_its_allowance_is_replaced_between_batches():
    pool = Pool(workers=1, max_requests_per_worker=5)
    pool.connect("a")
    pool.submit("a", [f"r{i}" for i in range(12)])
    sizes = [len(b) for b in pool.requests(0)]
    assert sum(sizes) <= 5  # its batches fit what it may still process
    while pool.batches[0]:
        pool.finish(0)
    assert pool.recycled == [0] and pool.scheduler.worker_recycles == 1
    assert pool.requests(0) == []  # nothing goes to it while it is replaced
    pool.act(pool.scheduler.worker_back(0))  # the fresh one is up
    while pool.batches[0]:
        pool.finish(0)
    pool.act(pool.scheduler.worker_back(0))
    while pool.batches[0]:
        pool.finish(0)
    assert pool.ran == [f"r{i}" for i in range(12)]  # none lost, none repeated
    assert pool.recycled == [0, 0]


# -- the idle-pool fast path: a client runs a lone request on a worker itself ---------------


def submit_beside_fast_path(pool: Pool, client: str, requests, running: FastPathRun | None):
    """Like Pool.submit, with the client's fast-path request running (``reserved``)."""
    first = pool.next_id[client]
    ids = list(range(first, first + len(requests)))
    pool.next_id[client] = first + len(requests)
    seq = pool.next_seq[client] = pool.next_seq.get(client, 0) + 1
    message = Submit(client, pool.epochs[client], seq, ids, list(requests), reserved=running)
    pool.act(pool.scheduler.submit(message))
    return ids


def fast_path_report(client: str, finished: int, processed: int = 1) -> FastPathReport:
    return FastPathReport(client, finished, processed, 0, 0.001 * processed, 0.002 * processed)


def test_a_worker_running_a_fast_path_request_gets_nothing_until_its_client_reports_it():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.next_id["a"] = 2  # request 1 went to worker 0 by the fast path
    submit_beside_fast_path(pool, "a", ["x", "y"], running=FastPathRun(0, 1))
    assert pool.batches[0] == []  # queued behind the fast-path request, in order
    assert pool.scheduler.queued == 2
    pool.act(pool.scheduler.fast_path_done(fast_path_report("a", finished=1)))
    assert pool.requests(0) == [["x", "y"]]
    assert pool.scheduler.processed == 1


def test_work_beside_a_fast_path_request_goes_to_the_other_workers():
    pool = Pool(workers=2)
    pool.connect("a")
    pool.next_id["a"] = 2
    submit_beside_fast_path(pool, "a", ["x"], running=FastPathRun(0, 1))
    assert pool.batches[0] == [] and pool.requests(1) == [["x"]]


def test_a_fast_path_report_that_overtook_its_reservation_reserves_nothing():
    """The coordinator may run a client's report before the submit sent ahead of it."""
    pool = Pool(workers=1)
    pool.connect("a")
    pool.next_id["a"] = 2
    pool.act(pool.scheduler.fast_path_done(fast_path_report("a", finished=1)))
    submit_beside_fast_path(pool, "a", ["x"], running=FastPathRun(0, 1))
    assert pool.requests(0) == [["x"]]


def test_a_disconnected_client_frees_the_worker_of_its_fast_path_request():
    pool = Pool(workers=1)
    pool.connect("a")
    pool.connect("b")
    pool.next_id["a"] = 2
    submit_beside_fast_path(pool, "a", ["x"], running=FastPathRun(0, 1))
    pool.submit("b", ["z"])
    assert pool.batches[0] == []
    pool.act(pool.scheduler.disconnect("a"))
    assert pool.requests(0) == [["z"]]


def test_a_fast_path_death_counts_against_retries_and_the_request_then_travels_alone():
    pool = Pool(workers=1, max_retries=1)
    pool.connect("a")
    died = [FastPathRun(0, 1)]
    message = Submit("a", pool.epochs["a"], 1, [1, 2], ["poison", "next"], died=died)
    pool.act(pool.scheduler.submit(message))
    assert pool.requests(0) == [["poison"]]  # alone, like any request whose worker died
    pool.batches[0].clear()  # it kills its worker again
    pool.act(pool.scheduler.worker_died(0, RuntimeError("killed")))
    pool.act(pool.scheduler.worker_back(0))
    (failed,) = [n for n in pool.mail("a") if isinstance(n, Failed)]
    assert failed.ids == [1] and failed.error.attempts == 2
    assert pool.requests(0) == [["next"]]


def test_with_no_retries_a_fast_path_death_fails_the_request_without_running_it_again():
    pool = Pool(workers=1, max_retries=0)
    pool.connect("a")
    message = Submit("a", pool.epochs["a"], 1, [1], ["poison"], died=[FastPathRun(0, 1)])
    pool.act(pool.scheduler.submit(message))
    assert pool.batches[0] == []
    (failed,) = [n for n in pool.mail("a") if isinstance(n, Failed)]
    assert failed.ids == [1] and failed.error.attempts == 1
    assert pool.scheduler.queued == 0


def test_an_idle_worker_goes_before_one_running_a_fast_path_request():
    pool = Pool(workers=2)
    pool.connect("a")
    pool.next_id["a"] = 2
    submit_beside_fast_path(pool, "a", [], running=FastPathRun(0, 1))
    pool.act(pool.scheduler.retire_workers(1))
    assert pool.retired == [1]


def test_a_worker_running_a_fast_path_request_retires_only_once_the_request_ended():
    pool = Pool(workers=2)
    pool.connect("a")
    pool.next_id["a"] = 2
    submit_beside_fast_path(pool, "a", ["x", "y"], running=FastPathRun(0, 1))
    assert sum(pool.requests(1), []) == ["x", "y"]  # more than worker 0's one
    pool.act(pool.scheduler.retire_workers(1))
    assert pool.retired == [] and pool.scheduler.workers == 1
    pool.act(pool.scheduler.fast_path_done(fast_path_report("a", finished=1)))
    assert pool.retired == [0]
    while pool.batches[1]:
        pool.finish(1)
    assert pool.results("a") == {2: "x!", 3: "y!"}
