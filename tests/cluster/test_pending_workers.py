"""Autoscaled workers that need what no node has free wait for a node, and start on one added.

The waiting workers' demand is what Ray's own autoscaler reads to add a node (cluster.yaml
declares the node types); on this loopback cluster the node is added by hand.
"""

from __future__ import annotations

from tests.programs import run_program


def test_waiting_workers_start_on_an_added_node_and_stop_cleanly_while_waiting():
    # The driver dumps its stacks and exits at 170 s if it hangs.
    report, stderr = run_program("tests.cluster.pending_workers", timeout=240)
    head, added = report["head"], report["added"]

    # Grown to 3 for the burst; 2 wait for an accel, and Ray sees that demand.
    waiting = report["waiting"]
    assert waiting["workers"] == waiting["workers_alive"] == 3
    assert waiting["workers_up"] == 1  # the two without a node are not up
    assert waiting["workers_started"] == 1 and waiting["workers_waiting"] == 2
    assert waiting["ray_pending_accel"] == 2
    assert report["nodes_before"] == [head]

    # The node added: they start there, work runs there, everything is right.
    assert report["requests"] == report["correct"] == 360
    assert set(report["nodes_used"]) == {head, added}
    assert report["stats"]["workers"] == report["stats"]["workers_alive"] == 3
    assert report["stats"]["workers_up"] == 3
    assert report["stats"]["failed"] == report["stats"]["worker_restarts"] == 0

    # Stopped while 2 of its workers waited: at once, and they went with it.
    second = report["second_waiting"]
    assert second["workers_started"] == 3 and second["ray_pending_accel"] == 2
    assert report["stop_seconds"] < 20
    assert report["second_aborted"] + report["second_done"] == 300
    assert report["second_aborted"] > 0
    assert report["ray_pending_accel_after_stop"] == 0

    # Ray and the cluster shut down under a service with waiting workers, then stop(): it
    # returns, its pending promises are aborted, and no new Ray was started to reach it.
    assert report["third_waiting"]["workers_waiting"] == 2
    assert report["ray_shutdown_seconds"] < 20 and report["cluster_shutdown_seconds"] < 30
    assert report["stop_after_shutdown_seconds"] < 20
    assert report["third_settled"] == 300 and report["third_aborted"] > 0
    assert report["ray_started_again"] is False
    assert "Started a local Ray instance" not in stderr  # not at exit either
