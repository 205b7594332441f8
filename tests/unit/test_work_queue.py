from raypw.coordinator import WorkQueue, _Batch


def dispatch(items, batch_id=0, worker=0):
    batch = _Batch(batch_id, worker, items)
    for position, item in enumerate(items):
        item.batch = batch
        item.position = position
    return batch


def test_equal_requests_from_all_clients_become_one_item():
    queue = WorkQueue()
    queue.add("a", [1, 2], ["x", "y"], None)
    queue.add("b", [7], ["x"], None)
    assert len(queue) == 2
    assert queue.deduplicated == 1
    items = queue.take(10)
    assert [i.request for i in items] == ["x", "y"]
    assert items[0].subscribers == [("a", 1), ("b", 7)]


def test_keys_decide_equality_when_given():
    queue = WorkQueue()
    queue.add("a", [1, 2], [{"id": 1, "v": 1}, {"id": 1, "v": 2}], [1, 1])
    assert len(queue) == 1


def test_joining_a_dispatched_item_is_reported():
    queue = WorkQueue()
    queue.add("a", [1], ["x"], None)
    dispatch(queue.take(1))
    joined = queue.add("b", [5], ["x"], None)
    assert [i.request for i in joined] == ["x"]
    assert len(queue) == 0


def test_take_is_fifo_and_bounded():
    queue = WorkQueue()
    queue.add("a", list(range(10)), [f"r{i}" for i in range(10)], None)
    assert [i.request for i in queue.take(3)] == ["r0", "r1", "r2"]
    assert len(queue) == 7


def test_aborted_queued_item_is_never_taken():
    queue = WorkQueue()
    queue.add("a", [1, 2, 3], ["x", "y", "z"], None)
    assert queue.abort("a", [2]) == []
    assert len(queue) == 2
    assert [i.request for i in queue.take(10)] == ["x", "z"]


def test_abort_keeps_item_while_another_client_waits():
    queue = WorkQueue()
    queue.add("a", [1], ["x"], None)
    queue.add("b", [1], ["x"], None)
    queue.abort("a", [1])
    items = queue.take(10)
    assert [i.subscribers for i in items] == [[("b", 1)]]


def test_aborting_a_dispatched_item_returns_it_for_skipping():
    queue = WorkQueue()
    queue.add("a", [1, 2], ["x", "y"], None)
    dispatch(queue.take(2))
    orphaned = queue.abort("a", [2])
    assert [i.request for i in orphaned] == ["y"]
    # A new equal request after the abort is a new item, processed anew.
    queue.add("a", [3], ["y"], None)
    assert len(queue) == 1


def test_abort_of_unknown_or_finished_ids_is_ignored():
    queue = WorkQueue()
    queue.add("a", [1], ["x"], None)
    items = queue.take(1)
    dispatch(items)
    queue.finish(items)
    assert queue.abort("a", [1, 99]) == []
    assert queue.abort("nobody", [1]) == []


def test_finish_forgets_so_equal_request_is_processed_again():
    queue = WorkQueue()
    queue.add("a", [1], ["x"], None)
    items = queue.take(1)
    dispatch(items)
    queue.finish(items)
    queue.add("a", [2], ["x"], None)
    assert len(queue) == 1


def test_drop_client_withdraws_all_its_requests():
    queue = WorkQueue()
    queue.add("a", [1, 2], ["x", "y"], None)
    queue.add("b", [1], ["y"], None)
    dispatch(queue.take(1))  # x dispatched
    orphaned = queue.drop_client("a")
    assert [i.request for i in orphaned] == ["x"]
    assert [i.request for i in queue.take(10)] == ["y"]


def test_requeue_front_keeps_order_and_skips_abandoned_items():
    queue = WorkQueue()
    queue.add("a", [1, 2, 3, 4], ["w", "x", "y", "z"], None)
    taken = queue.take(3)
    dispatch(taken)
    queue.abort("a", [2])
    queue.requeue_front(taken)
    assert [i.request for i in queue.take(10)] == ["w", "y", "z"]


def test_abort_that_overtakes_its_submit_still_drops_the_request():
    queue = WorkQueue()
    queue.add("a", [1], ["x"], None)
    queue.abort("a", [2])  # the submit carrying id 2 has not arrived yet
    queue.add("a", [2, 3], ["y", "z"], None)
    taken = queue.take(10)
    assert [i.request for i in taken] == ["x", "z"]
    dispatch(taken)
    queue.finish(taken)
    # An abort for an id already seen and finished leaves no tombstone behind.
    queue.abort("a", [1])
    queue.add("a", [1], ["again"], None)
    assert [i.request for i in queue.take(10)] == ["again"]


def test_a_client_that_leaves_keeps_its_requests_until_they_finish():
    queue = WorkQueue()
    queue.add("a", [1, 2], ["x", "y"], None)
    queue.leave("a")
    assert len(queue) == 2
    first = queue.take(1)
    dispatch(first)
    queue.finish(first)
    assert "a" in queue._by_client  # y still waits
    rest = queue.take(10)
    assert [i.request for i in rest] == ["y"]
    dispatch(rest, batch_id=1)
    queue.finish(rest)
    assert "a" not in queue._by_client and "a" not in queue._highest


def test_a_client_that_leaves_with_nothing_pending_is_forgotten_at_once():
    queue = WorkQueue()
    queue.add_client("a")
    queue.leave("a")
    assert "a" not in queue._by_client
