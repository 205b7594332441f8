import pydantic
import pytest

import raypw
from raypw.config import ServiceConfig


def test_all_names_are_exported_and_nothing_else_public():
    public = {name for name in dir(raypw) if not name.startswith("_")}
    modules = {
        "batching",
        "cli",
        "client",
        "compat",
        "config",
        "coordinator",
        "demo",
        "errors",
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
