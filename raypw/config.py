"""Validated configuration of a :class:`~raypw.ProcessorService`.

Every value is checked once, when the service is constructed, so a bad value fails at the
call that made it and names the field (``parallel_workers``), never later inside Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["AutoscaleConfig", "BatchingConfig", "CacheConfig", "ServiceConfig", "WorkerResources"]


class WorkerResources(BaseModel):
    """Ray resources reserved by each processor worker.

    ``None`` keeps Ray's own default for actors: one CPU is needed to place the worker,
    none is held while it runs, so more workers than cores can run on a laptop.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    memory: int | None = Field(default=None, ge=0, description="Bytes of memory to reserve.")
    resources: dict[str, float] | None = None
    runtime_env: dict[str, Any] | None = None

    def actor_options(self) -> dict[str, Any]:
        """Returns the options for ``ActorClass.options()`` that are set."""
        return self.model_dump(exclude_none=True)


class BatchingConfig(BaseModel):
    """How the coordinator groups queued requests into calls to a worker.

    The coordinator measures how long one request takes and how much each call to a worker
    costs beyond the work, and sends each idle worker as many requests as keep that overhead
    near 4%, between ``target_batch_seconds`` and ``max_batch_seconds`` of work: slow requests
    go one at a time, tiny ones by the thousand. A user rarely needs to change these; lower
    ``max_batch_seconds`` to get results of mid-sized requests in smaller groups.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    target_batch_seconds: float = Field(default=0.02, gt=0, le=60)
    max_batch_seconds: float = Field(default=0.25, gt=0, le=600)
    max_batch_size: int = Field(default=4096, ge=1)


class AutoscaleConfig(BaseModel):
    """How a pool grows and shrinks on its own, between ``min_workers`` and ``max_workers``.

    Every ``check_seconds`` the coordinator estimates how long the work waiting now would
    wait (the requests not started times the usual time per request, over the workers). When
    that is over ``target_wait_seconds`` it grows the pool to as many workers as bring the wait
    under it (at most ``max_workers``); with nothing waiting, it retires workers idle for
    ``idle_seconds`` (never below ``min_workers``). On a Ray cluster, workers that need
    resources no node has wait to be placed, which is what makes Ray's autoscaler add nodes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_workers: int = Field(ge=1)
    max_workers: int = Field(ge=1)
    target_wait_seconds: float = Field(default=1.0, gt=0)
    idle_seconds: float = Field(default=30.0, gt=0)
    check_seconds: float = Field(default=0.5, gt=0, le=60)

    @model_validator(mode="after")
    def _max_is_not_below_min(self) -> AutoscaleConfig:
        if self.max_workers < self.min_workers:
            raise ValueError(
                f"max_workers ({self.max_workers}) is below min_workers ({self.min_workers})"
            )
        return self


class CacheConfig(BaseModel):
    """The result cache: an equal request queued after one finished gets its stored result.

    Equal means what dedup means (the request, or what the service's ``key=`` makes of it).
    The cache lives in the coordinator, so every program attached to a named service shares
    it; only results are kept, never errors. It holds at most ``max_entries`` results and
    ``max_bytes`` of them (as pickled), least recently used first out, and serves a result
    for ``ttl_seconds`` after it was stored (None: until evicted).

    ``CacheConfig(1000, 60)`` is ``CacheConfig(max_entries=1000, ttl_seconds=60)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_entries: int = Field(default=10_000, ge=1)
    ttl_seconds: float | None = Field(default=None, gt=0)
    max_bytes: int = Field(default=256 * 2**20, ge=1)

    def __init__(
        self, max_entries: int = 10_000, ttl_seconds: float | None = None, **data: Any
    ) -> None:
        super().__init__(max_entries=max_entries, ttl_seconds=ttl_seconds, **data)

    @field_validator("ttl_seconds", mode="before")
    @classmethod
    def _seconds_are_numbers(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError(f"must be a number of seconds, not {value}")
        if isinstance(value, int):  # strict mode takes no int for a float
            return float(value)
        if isinstance(value, float) and math.isinf(value) and value > 0:
            return None
        return value


class ServiceConfig(BaseModel):
    """Everything a :class:`~raypw.ProcessorService` needs to start.

    Raises:
        pydantic.ValidationError: (a ``ValueError``) naming the field that is wrong.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    parallel_workers: int = Field(default=10, ge=1, strict=True)
    processor_class_init_args: Sequence[Any] | Mapping[str, Any] | None = None
    address: str | None = Field(
        default=None,
        description="Ray address to attach to; None uses RAY_ADDRESS or starts a local Ray.",
    )
    worker: WorkerResources = WorkerResources()
    batching: BatchingConfig = BatchingConfig()
    start_timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for workers.")
    max_retries: int = Field(
        default=3,
        ge=0,
        strict=True,
        description="Times a request is dispatched again after its worker died mid-request.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name under which other programs attach with ProcessorService.connect().",
    )
    detached: bool = Field(
        default=False,
        strict=True,
        description="Keep a named service running after the program that started it exits.",
    )
    client_timeout: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds after which the coordinator forgets a program that stopped talking to it "
            "(killed) and withdraws its requests; a program that was only frozen sends them again."
        ),
    )

    request_timeout: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Default deadline of every request, in seconds from queue_request(); None or "
            "math.inf: none. "
            "A request's own timeout= overrides it."
        ),
    )
    request_timeout_grace: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds a request still running at its deadline has, once cancelled with "
            "ray.cancel, to return before its worker is killed and restarted."
        ),
    )

    max_queued: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description=(
            "Requests a program may have pending at once (finished ones whose "
            "completed_callback has not run yet count too); queue_request() waits for room "
            "beyond that (block=, block_timeout=). None: no limit."
        ),
    )

    autoscale: AutoscaleConfig | None = Field(
        default=None,
        description=(
            "Grow and shrink the pool with the work (parallel_workers=(min, max) is short for "
            "autoscale=AutoscaleConfig(min_workers=min, max_workers=max)); None: a fixed pool."
        ),
    )

    max_requests_per_worker: int | None = Field(
        default=None,
        ge=1,
        strict=True,
        description=(
            "A worker that processed this many requests is replaced by a fresh one between "
            "batches (for processors that leak); None: workers are never replaced."
        ),
    )

    cache: CacheConfig | None = Field(
        default=None,
        description=(
            "Keep finished results for equal requests queued later (cache=True: the defaults "
            "of CacheConfig); None: off."
        ),
    )

    metrics: bool = Field(
        default=True,
        strict=True,
        description=(
            "Export the service's counters and timings through ray.util.metrics "
            "(README 'Metrics'); False records none."
        ),
    )

    @field_validator(
        "start_timeout", "client_timeout", "request_timeout", "request_timeout_grace", mode="before"
    )
    @classmethod
    def _seconds_are_not_bools(cls, value: object) -> object:
        if isinstance(value, bool):  # True would pass as 1 s
            raise ValueError(f"must be a number of seconds, not {value}")
        return value

    @field_validator("request_timeout", mode="after")
    @classmethod
    def _infinity_is_no_deadline(cls, value: float | None) -> float | None:
        return None if value is not None and math.isinf(value) else value

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_true_is_the_defaults(cls, value: object) -> object:
        if value is True:
            return CacheConfig()
        if value is False:
            return None
        return value

    @model_validator(mode="before")
    @classmethod
    def _a_range_of_workers_autoscales(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        workers = data.get("parallel_workers")
        if isinstance(workers, tuple) and len(workers) == 2:
            if data.get("autoscale") is not None:
                raise ValueError(
                    "parallel_workers: give a (min, max) range or autoscale=, not both"
                )
            data["autoscale"] = {"min_workers": workers[0], "max_workers": workers[1]}
            data["parallel_workers"] = workers[0]
        elif workers is None and data.get("autoscale") is not None:
            scale = data["autoscale"]
            low = scale.get("min_workers") if isinstance(scale, Mapping) else scale.min_workers
            data["parallel_workers"] = low
        return data

    @model_validator(mode="after")
    def _workers_within_autoscale(self) -> ServiceConfig:
        scale = self.autoscale
        if scale is not None and not (
            scale.min_workers <= self.parallel_workers <= scale.max_workers
        ):
            raise ValueError(
                f"parallel_workers ({self.parallel_workers}) is outside autoscale's range "
                f"{scale.min_workers}..{scale.max_workers}"
            )
        return self

    @model_validator(mode="after")
    def _detached_needs_a_name(self) -> ServiceConfig:
        if self.detached and self.name is None:
            raise ValueError("detached=True needs a name: nobody could reach the service else")
        return self

    def init_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Splits ``processor_class_init_args`` into positional and keyword arguments."""
        args = self.processor_class_init_args
        if args is None:
            return (), {}
        if isinstance(args, Mapping):
            return (), dict(args)
        if isinstance(args, (str, bytes)):
            return (args,), {}
        return tuple(args), {}
