"""Behaviour 7: start, stop, configuration, and whose Ray it is."""

from __future__ import annotations

import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pydantic
import pytest
import ray

from raypw import (
    ProcessorService,
    PromiseAbortedError,
    ServiceNotRunningError,
    ServiceStartError,
    WorkerDiedError,
)
from tests.integration.conftest import alive_raypw_actors, processed, wait_until
from tests.integration.processors import (
    BrokenConstructor,
    ExitingConstructor,
    Gates,
    Recorder,
    Stamper,
)

ROOT = Path(__file__).resolve().parents[2]


def test_queue_request_before_start_raises_clear_error():
    service = ProcessorService(Recorder, parallel_workers=1)
    with pytest.raises(ServiceNotRunningError, match="start"):
        service.queue_request("early")
    service.stop()  # stopping a service that never started is fine


def test_queue_request_after_stop_raises_and_stop_is_idempotent(make_service):
    service = make_service(Recorder, parallel_workers=1)
    assert service.queue_request("x").get_result(timeout=30)["request"] == "x"
    service.stop()
    service.stop()
    with pytest.raises(ServiceNotRunningError):
        service.queue_request("late")
    with pytest.raises(RuntimeError):
        service.start()


def test_stop_waits_for_queued_work_by_default(make_service):
    service = make_service(Recorder, parallel_workers=2)
    promises = service.queue_requests(f"w{i}:0.2" for i in range(6))
    service.stop()
    assert [p.get_result(timeout=0)["request"] for p in promises] == [f"w{i}:0.2" for i in range(6)]


def test_stop_without_wait_aborts_pending_at_once(make_service, log_file):
    service = make_service(Recorder, parallel_workers=2, processor_class_init_args=(str(log_file),))
    # 30 s each: no request can finish while stop(wait=False) runs, so every promise, the
    # two running and the eight queued, must end aborted.
    promises = service.queue_requests(f"s{i}:30" for i in range(10))
    wait_until(lambda: len(processed(log_file)) == 2, "both workers run a request")
    started = time.monotonic()
    service.stop(wait=False)
    assert time.monotonic() - started < 15.0  # against 30 s for the running ones alone
    assert all(p.is_aborted() for p in promises)
    with pytest.raises(PromiseAbortedError):
        promises[-1].get_result(timeout=0)


def test_context_manager_starts_and_stops():
    with ProcessorService(Recorder, parallel_workers=1) as service:
        assert service.running
        promise = service.queue_request("ctx:0.2")
    assert not service.running
    assert promise.get_result(timeout=0)["request"] == "ctx:0.2"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"parallel_workers": 0}, "parallel_workers"),
        ({"parallel_workers": "two"}, "parallel_workers"),
        ({"parallel_workers": 2, "start_timeout": -1}, "start_timeout"),
        ({"parallel_workers": 2, "worker": {"num_cpus": -1}}, "num_cpus"),
        ({"parallel_workers": 2, "batching": {"max_batch_size": 0}}, "max_batch_size"),
        ({"parallel_workers": 2, "worker": {"gpus": 1}}, "gpus"),
    ],
)
def test_bad_config_fails_at_construction_naming_the_field(kwargs, field):
    with pytest.raises(pydantic.ValidationError, match=field):
        ProcessorService(Recorder, **kwargs)


def test_processor_class_must_be_a_processor():
    with pytest.raises(TypeError, match="processor_class"):
        ProcessorService(object, parallel_workers=1)


def test_processor_constructor_error_fails_start_naming_class_and_cause():
    service = ProcessorService(BrokenConstructor, parallel_workers=2)
    started = time.monotonic()
    with pytest.raises(ServiceStartError, match="BrokenConstructor.*model file not found"):
        service.start()
    assert time.monotonic() - started < 30
    assert not service.running
    assert alive_raypw_actors() == []


def test_processor_constructor_calling_sys_exit_fails_start_naming_it():
    # Ray takes a SystemExit in an actor's constructor for its process ending, and restarted
    # the worker only to see it end again; start() then said "the actor was restarted".
    service = ProcessorService(ExitingConstructor, parallel_workers=1)
    with pytest.raises(
        ServiceStartError, match=r"ExitingConstructor\(\) raised SystemExit: model file missing"
    ):
        service.start()
    assert not service.running
    assert alive_raypw_actors() == []


def _run_driver(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    environment.pop("RAY_ADDRESS", None) if "RAY_ADDRESS" not in env else None
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=180,
        env=environment,
        cwd=ROOT,
    )


def test_start_starts_ray_when_none_runs_and_stop_shuts_down_only_that():
    result = _run_driver(
        """
        import ray
        from raypw import ProcessorService
        from tests.integration.processors import Echo
        assert not ray.is_initialized()
        with ProcessorService(Echo, parallel_workers=1) as service:
            assert ray.is_initialized()
            print(service.queue_request("laptop").get_result(timeout=60))
        print("ray after stop:", ray.is_initialized())
        """
    )
    assert result.returncode == 0, result.stderr
    assert "laptop processed." in result.stdout
    assert "ray after stop: False" in result.stdout


def test_start_attaches_to_ray_address_and_leaves_that_ray_running():
    address = ray.get_runtime_context().gcs_address
    result = _run_driver(
        """
        import ray
        from raypw import ProcessorService
        from tests.integration.processors import Echo
        service = ProcessorService(Echo, parallel_workers=1).start()
        print("attached to", ray.get_runtime_context().gcs_address)
        print(service.queue_request("cluster").get_result(timeout=60))
        service.stop()
        print("connected after stop:", ray.is_initialized())
        """,
        RAY_ADDRESS=address,
        RAY_AUTH_MODE="token",
    )
    assert result.returncode == 0, result.stderr
    assert f"attached to {address}" in result.stdout
    assert "cluster processed." in result.stdout
    # The driver connected, so it disconnects; the cluster it did not start keeps serving.
    assert "connected after stop: False" in result.stdout
    assert ray.get(ray.put("alive")) == "alive"


# Registered after Ray's own exit handler and before the service's, so it runs between
# them: by then raypw's threads must have ended. A thread still inside a Ray call when Ray
# shuts down can end the process with exit code 1 and no traceback.
_CHECK_THREADS_AT_EXIT = """
    import atexit, threading
    import ray
    atexit.register(
        lambda: print("raypw threads before Ray shutdown:",
                      [t.name for t in threading.enumerate() if t.name.startswith("raypw")])
    )
"""


def test_a_program_that_exits_without_stop_exits_cleanly():
    address = ray.get_runtime_context().gcs_address
    code = (
        _CHECK_THREADS_AT_EXIT
        + """
    from raypw import ProcessorService
    from tests.integration.processors import Recorder
    service = ProcessorService(Recorder, parallel_workers=2).start()
    promises = service.queue_requests(f"r{i}:5" for i in range(5000))
    print("leaving with", len(promises))
    """
    )
    result = _run_driver(code, RAY_ADDRESS=address, RAY_AUTH_MODE="token")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "leaving with 5000" in result.stdout
    assert "raypw threads before Ray shutdown: []" in result.stdout, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert alive_raypw_actors() == []  # its workers ended with it


def test_a_detached_service_keeps_the_work_of_a_program_that_exits(tmp_path):
    address = ray.get_runtime_context().gcs_address
    log = tmp_path / "log"
    code = (
        _CHECK_THREADS_AT_EXIT
        + f"""
    from raypw import ProcessorService
    from tests.integration.processors import Recorder
    service = ProcessorService(
        Recorder, parallel_workers=2, processor_class_init_args=({str(log)!r},),
        name="exit-handover", detached=True,
    ).start()
    service.queue_requests(f"r{{i}}:0.01" for i in range(300))
    """
    )
    result = _run_driver(code, RAY_ADDRESS=address, RAY_AUTH_MODE="token")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "raypw threads before Ray shutdown: []" in result.stdout, result.stdout
    service = ProcessorService.connect("exit-handover")
    try:
        # Every request the program queued was processed, once, after it exited.
        assert _processed_when_done(log, 300) == sorted(f"r{i}:0.01" for i in range(300))
        assert service.stats().queued == 0
    finally:
        service.stop(shutdown=True)
    assert alive_raypw_actors() == []


def _processed_when_done(log: Path, expected: int, timeout: float = 60) -> list[str]:
    """The sorted lines of ``log`` once it has ``expected`` of them (or time ran out)."""
    deadline = time.monotonic() + timeout
    while len(processed(log)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return sorted(processed(log))


def test_a_running_service_nobody_refers_to_is_stopped(caplog):
    service = ProcessorService(Recorder, parallel_workers=1).start()
    promise = service.queue_request("slow:30")
    with caplog.at_level(logging.WARNING, logger="raypw"):
        del service
        gc.collect()
    assert "garbage-collected while running" in caplog.text
    assert promise.is_aborted()
    assert alive_raypw_actors() == []


def test_a_detached_service_outlives_the_object_that_started_it(tmp_path):
    log = tmp_path / "log"

    def start_and_forget() -> None:
        service = ProcessorService(
            Recorder,
            parallel_workers=1,
            processor_class_init_args=(str(log),),
            name="forgotten",
            detached=True,
        ).start()
        service.queue_requests([f"f{i}" for i in range(20)])

    start_and_forget()
    gc.collect()
    service = ProcessorService.connect("forgotten")
    try:
        assert _processed_when_done(log, 20) == sorted(f"f{i}" for i in range(20))
    finally:
        service.stop(shutdown=True)
    assert alive_raypw_actors() == []


def test_starting_a_twin_of_a_running_service_warns(caplog):
    # A notebook cell run twice while Out[] still holds the first service: it cannot be
    # garbage-collected, so raypw says how to free its workers.
    first = ProcessorService(Recorder, parallel_workers=1).start()
    try:
        with caplog.at_level(logging.WARNING, logger="raypw"):
            second = ProcessorService(Recorder, parallel_workers=1).start()
            second.stop()
            third = ProcessorService(Recorder, parallel_workers=2).start()  # not a twin
            third.stop()
        twin_warnings = [r for r in caplog.records if "same configuration" in r.message]
        assert len(twin_warnings) == 1
        assert "re-run cell" in twin_warnings[0].message
    finally:
        first.stop()


def _raypw_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("raypw")}


def test_stop_ends_the_threads_of_a_service_another_program_shut_down():
    before = _raypw_threads()
    for cycle in range(3):
        owner = ProcessorService(Recorder, parallel_workers=1, name=f"ended-{cycle}").start()
        pending = owner.queue_request("slow:30")
        ProcessorService.connect(f"ended-{cycle}").stop(shutdown=True)
        with pytest.raises(PromiseAbortedError):
            pending.get_result(timeout=60)  # the owner has heard the service is gone
        owner.stop()
    assert _raypw_threads() == before
    assert alive_raypw_actors() == []


def test_stop_ends_the_threads_of_a_service_whose_coordinator_could_not_be_replaced(tmp_path):
    log, broken = tmp_path / "log", tmp_path / "broken"
    before = _raypw_threads()
    for _ in range(2):  # a leak shows in every cycle
        broken.unlink(missing_ok=True)
        service = ProcessorService(
            Stamper, parallel_workers=1, processor_class_init_args=(str(log), None, str(broken))
        ).start()
        pending = service.queue_request("sleep30")
        broken.touch()  # from now on no processor can be built
        ray.kill(service._coordinator)
        with pytest.raises(WorkerDiedError, match="could not be replaced"):
            pending.get_result(timeout=60)
        service.stop()
    assert _raypw_threads() == before
    assert alive_raypw_actors() == []


def _wait_until_stop_waits(thread_id: int, timeout: float = 60) -> None:
    """Returns once the thread ``thread_id`` waits inside ``stop()`` (read off its stack)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread_id)
        names = []
        while frame is not None:
            names.append(frame.f_code.co_name)
            frame = frame.f_back
        if names and names[0] == "wait" and "stop" in names:
            return
        time.sleep(0.01)
    raise AssertionError("stop() did not wait")


@pytest.mark.parametrize("then", ["stop again", "let go of it"])
def test_an_interrupted_stop_can_be_repeated_and_ends_everything(then, tmp_path):
    before = _raypw_threads()
    service = ProcessorService(
        Gates, parallel_workers=1, processor_class_init_args=(str(tmp_path),)
    ).start()
    promise = service.queue_request("slow")  # runs until the test opens its gate
    main = threading.get_ident()

    def interrupt_once_stop_waits() -> None:  # Ctrl-C while stop() waits for the work
        _wait_until_stop_waits(main)
        signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt_once_stop_waits)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            service.stop()
    finally:
        helper.join()
        signal.signal(signal.SIGINT, previous)
    assert not service.running
    assert not promise.done()
    if then == "stop again":
        # Finishes the job: waits for the work (its gate opens only once stop() waits),
        # then ends everything.
        opener = threading.Thread(
            target=lambda: (_wait_until_stop_waits(main), (tmp_path / "slow").touch())
        )
        opener.start()
        try:
            service.stop()
        finally:
            opener.join()
        assert promise.get_result(timeout=0)[0] == "slow"
    else:
        del service
        gc.collect()
        assert promise.is_aborted()
    assert alive_raypw_actors() == []
    assert _raypw_threads() == before


def test_stop_at_once_from_another_thread_ends_a_stop_that_waits(make_service):
    service = make_service(Recorder, parallel_workers=1)
    promises = service.queue_requests(["slow:60", "next"])
    errors: list[BaseException] = []

    def stop(**kwargs) -> None:
        try:
            service.stop(**kwargs)
        except BaseException as exc:
            errors.append(exc)

    waiting = threading.Thread(target=stop)
    waiting.start()
    _wait_until_stop_waits(waiting.ident)
    at_once = threading.Thread(target=stop, kwargs={"wait": False})
    at_once.start()
    at_once.join(30)
    waiting.join(30)
    assert not at_once.is_alive() and not waiting.is_alive()
    assert errors == []
    assert all(p.is_aborted() for p in promises)
    assert alive_raypw_actors() == []


def test_a_service_started_from_a_thread_that_ends_keeps_working():
    # A web framework's startup hook or a notebook helper starts the service and its thread
    # ends. Linux sends the parent-death signal when the *thread* that started a child process
    # ends, and Ray's raylet and GCS ask for SIGKILL then.
    result = _run_driver(
        """
        import os, threading, time
        from raypw import ProcessorService
        from tests.integration.processors import Echo

        def ray_daemons():
            alive = set()
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    stat = open(f"/proc/{pid}/stat").read()
                except OSError:
                    continue
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
                if int(ppid) == os.getpid() and state != "Z":
                    alive.add(name)
            return sorted(alive & {"raylet", "gcs_server"})

        def start_in_hook():
            started["service"] = ProcessorService(Echo, parallel_workers=1).start()

        started = {}
        hook = threading.Thread(target=start_in_hook)
        hook.start()
        hook.join()
        while os.path.exists(f"/proc/self/task/{hook.native_id}"):  # until the thread is gone
            time.sleep(0.01)
        service = started["service"]
        promises = service.queue_requests([f"r{i}" for i in range(20)])
        print("last:", [p.get_result(timeout=60) for p in promises][-1])
        print("ray daemons alive:", ray_daemons())
        with ProcessorService(Echo, parallel_workers=1) as other:  # hung when they had died
            print("next:", other.queue_request("again").get_result(timeout=60))
        service.stop()
        print("stopped")
        """,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "last: r19 processed." in result.stdout
    assert "ray daemons alive: ['gcs_server', 'raylet']" in result.stdout
    assert "next: again processed." in result.stdout
    assert "stopped" in result.stdout
