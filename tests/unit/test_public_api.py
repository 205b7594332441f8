import json
import math
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

import raypw
from raypw.config import ServiceConfig


def test_all_names_are_exported_and_nothing_else_public():
    public = {name for name in dir(raypw) if not name.startswith("_")}
    modules = {
        "autoscale",
        "backlog",
        "batching",
        "cache",
        "cli",
        "client",
        "compat",
        "config",
        "coordinator",
        "deadlines",
        "demo",
        "errors",
        "fast_path",
        "metrics",
        "output",
        "processor",
        "progress",
        "promise",
        "promise_set",
        "protocol",
        "scheduler",
        "service",
        "stats",
        "worker",
    }
    assert set(raypw.__all__) - {"__version__"} == public - modules


def test_every_public_name_loads_from_its_module():
    for name in raypw.__all__:
        value = getattr(raypw, name)
        if name != "__version__":
            assert getattr(sys.modules[value.__module__], name) is value
    with pytest.raises(AttributeError, match="no_such_name"):
        raypw.no_such_name  # noqa: B018


def test_a_worker_process_imports_only_what_it_runs():
    # A worker actor imports raypw.worker and the user's processor module (raypw.Processor):
    # never the client, the service or pydantic.
    code = (
        "import json, sys, raypw.worker, raypw\n"
        "raypw.Processor\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('raypw', 'pydantic')))))"
    )
    root = Path(raypw.__file__).parents[1]  # this raypw, not an installed one
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    loaded = json.loads(done.stdout)
    assert loaded == ["raypw", "raypw.errors", "raypw.processor", "raypw.protocol", "raypw.worker"]


def test_errors_keep_stdlib_bases():
    assert issubclass(raypw.ResultTimeoutError, TimeoutError)
    assert issubclass(raypw.ServiceNotRunningError, RuntimeError)
    assert all(
        issubclass(getattr(raypw, name), raypw.RaypwError)
        for name in raypw.__all__
        if name.endswith("Error")
    )


def test_config_defaults_and_init_args():
    config = ServiceConfig()
    assert config.parallel_workers == 10
    assert config.metrics is True
    assert config.init_args() == ((), {})
    assert ServiceConfig(processor_class_init_args=[1, 2]).init_args() == ((1, 2), {})
    assert ServiceConfig(processor_class_init_args={"a": 1}).init_args() == ((), {"a": 1})
    assert ServiceConfig(processor_class_init_args="path").init_args() == (("path",), {})


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(pydantic.ValidationError, match="parallel_workers"):
        ServiceConfig(parallel_workers=0)
    with pytest.raises(pydantic.ValidationError, match="parallel_workers"):
        ServiceConfig(parallel_workers=1.5)
    with pytest.raises(pydantic.ValidationError, match="target_batch_seconds"):
        ServiceConfig(batching={"target_batch_seconds": 0})
    with pytest.raises(pydantic.ValidationError, match="metrics"):
        ServiceConfig(metrics="no")  # a string would be truthy: refused, not guessed at


def test_worker_resources_become_actor_options():
    config = ServiceConfig(worker={"num_cpus": 1, "resources": {"gpu_box": 1.0}})
    assert config.worker.actor_options() == {"num_cpus": 1, "resources": {"gpu_box": 1.0}}


def test_service_validates_before_touching_ray():
    class P(raypw.Processor):
        def process(self, request):
            return request

    with pytest.raises(pydantic.ValidationError, match="parallel_workers"):
        raypw.ProcessorService(P, parallel_workers=0)
    service = raypw.ProcessorService(P, parallel_workers=3)
    assert repr(service) == "<ProcessorService P workers=3 new>"
    with pytest.raises(raypw.ServiceNotRunningError):
        service.queue_request("x")


def test_init_args_that_cannot_be_pickled_are_refused_at_construction_naming_them():
    import threading

    class P(raypw.Processor):
        def __init__(self, make, *rest):
            self.made = make()

        def process(self, request):
            return request

    for bad in ((threading.Lock(),), {"make": threading.Lock()}, [lambda: 1, threading.Lock()]):
        with pytest.raises(TypeError, match="processor_class_init_args must be picklable"):
            raypw.ProcessorService(P, parallel_workers=1, processor_class_init_args=bad)
    # What Ray can ship (a lambda, by value) passes.
    raypw.ProcessorService(P, parallel_workers=1, processor_class_init_args=(lambda: 1,))


def test_a_bad_timeout_is_refused_at_the_call_naming_it():
    class P(raypw.Processor):
        def process(self, request):
            return request

    service = raypw.ProcessorService(P, parallel_workers=1)
    for bad, error in [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        ("5", TypeError),
        (True, TypeError),
        ([1], TypeError),
    ]:
        with pytest.raises(error, match="timeout"):
            service.queue_request("x", timeout=bad)
        with pytest.raises(error, match="timeout"):
            service.queue_requests(["x"], timeout=bad)
    with pytest.raises(pydantic.ValidationError, match="request_timeout"):
        raypw.ProcessorService(P, request_timeout=0)
    with pytest.raises(pydantic.ValidationError, match="request_timeout_grace"):
        raypw.ProcessorService(P, request_timeout_grace=-1)
    for field in ("request_timeout", "request_timeout_grace", "start_timeout", "client_timeout"):
        with pytest.raises(pydantic.ValidationError, match=f"{field}\n.*not True"):
            raypw.ProcessorService(P, **{field: True})
    assert raypw.ProcessorService(P, request_timeout=math.inf).config.request_timeout is None


def test_request_timeout_error_is_a_timeout_error():
    assert issubclass(raypw.RequestTimeoutError, TimeoutError)
    assert issubclass(raypw.RequestTimeoutError, raypw.RaypwError)


def test_bad_block_arguments_are_refused_at_the_call_naming_them():
    class P(raypw.Processor):
        def process(self, request):
            return request

    service = raypw.ProcessorService(P, parallel_workers=1)
    for kwargs, error, name in [
        ({"block": "yes"}, TypeError, "block"),
        ({"block": None}, TypeError, "block"),
        ({"block_timeout": -1}, ValueError, "block_timeout"),
        ({"block_timeout": float("nan")}, ValueError, "block_timeout"),
        ({"block_timeout": "1"}, TypeError, "block_timeout"),
    ]:
        with pytest.raises(error, match=name):
            service.queue_request("x", **kwargs)
        with pytest.raises(error, match=name):
            service.queue_requests(["x"], **kwargs)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(pydantic.ValidationError, match="max_queued"):
            raypw.ProcessorService(P, max_queued=bad)


def test_queue_full_error_is_a_queue_full():
    import queue

    assert issubclass(raypw.QueueFullError, queue.Full)
    assert issubclass(raypw.QueueFullError, raypw.RaypwError)
