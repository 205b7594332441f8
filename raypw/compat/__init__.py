"""parallel-workers' names and semantics, on raypw's engine.

A program written for the parallel-workers library runs unchanged but for one line::

    from raypw.compat import Processor, ProcessorService, PromiseSet

Everything here wraps raypw's own :class:`raypw.ProcessorService`, :class:`raypw.Promise` and
:class:`raypw.PromiseSet`; the work itself runs on the same engine. What differs from raypw,
as parallel-workers did it:

- ``get_result()`` never raises for a request's fate: an aborted request, a ``process()``
  that raised (logged, with its traceback, by the worker) and a lost worker all give None.
- ``abort()`` removes a request only if no worker has started it, and returns None; a
  running request finishes and delivers its result.
- The service may be started twice (the second call does nothing), restarted after
  ``stop()``, and given requests while stopped: they run once it is started.
- ``PromiseSet(list).select()`` yields a promise as many times as the list holds it, and a
  ``select(timeout)`` that runs out of time just ends.
- The processor may be any class with a ``process(request)`` method.

Where parallel-workers had a plain bug, raypw's behaviour stays: equal requests queued while
one is pending run once and every ``completed_callback`` given for them is called (the
original ran them twice and called only the first), and ``wait_for_all(ignore_aborted=True,
completed_callback=f)`` skips aborted promises (the original raised ``AttributeError``).
"""

from raypw.compat.promise import Promise, PromiseSet
from raypw.compat.service import (
    SERVICE_RUNNING,
    SERVICE_STOPPED,
    Processor,
    ProcessorService,
)

__all__ = [
    "SERVICE_RUNNING",
    "SERVICE_STOPPED",
    "Processor",
    "ProcessorService",
    "Promise",
    "PromiseSet",
]
