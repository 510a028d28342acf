"""The runtime: load once, then preprocess -> predict under the lock -> postprocess, per request.

Pre- and postprocess of different requests run concurrently: sync hooks on an elastic thread pool
(as wide as the requests in flight), async hooks on the event loop. Predict runs through a
:mod:`kingpost.predictor` with ``predict_concurrency`` slots. How each hook runs is decided once,
in :meth:`Runtime.start`; the request path only calls what was chosen then.

The runtime knows nothing of HTTP or Ray: it raises the domain errors of :mod:`kingpost.errors`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from kingpost import calls, loader
from kingpost.codecs import is_response
from kingpost.concurrency import ElasticPool, in_pool, on_daemon_thread, settle
from kingpost.config import Config, load_config
from kingpost.environment import EnvironmentWatch
from kingpost.errors import (
    DeadlineExceeded,
    KingpostError,
    MethodNotFoundError,
    ModelError,
    ModelLoadError,
    NotReadyError,
    describe,
    user_error,
)
from kingpost.hooks import Hook
from kingpost.predictor.jobs import QUEUE
from kingpost.predictor.streams import ChunkStream, generator_stream
from kingpost.predictor.task_predictor import TaskPredictor
from kingpost.predictor.thread_predictor import ThreadPredictor
from kingpost.secrets import SecretStore
from kingpost.stats import RuntimeStats
from kingpost.surface import Surface
from kingpost.types import HookKind, Stage, State
from kingpost.weights import Fetcher, LazyDataResolver
from kingpost.weights.progress import weights_progress

logger = logging.getLogger(__name__)


class Runtime:
    """One loaded model and the machinery that serves it. Create, ``await start()``, ``await predict(x)``."""

    def __init__(self, bundle_dir: str | Path, config: Config, *, secrets_dir: str | Path | None = None) -> None:
        """A runtime for the bundle in ``bundle_dir`` whose config.yaml is already read (``config``)."""
        self.bundle_dir = Path(bundle_dir)
        self.config = config
        self.secrets = SecretStore(config.secrets, secrets_dir)
        self.stats = RuntimeStats()
        self.state = State.NEW
        self.failure: str | None = None
        self.streams = False
        self._pool = ElasticPool("kingpost-hook")
        self._preprocess: Stage | None = None
        self._postprocess: Stage | None = None
        self._healthy: Stage | None = None
        self._predictor: ThreadPredictor | TaskPredictor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout = config.runtime.request_timeout_s
        self._secrets_dir = secrets_dir
        self._resolver: LazyDataResolver | None = None
        self.activity: str | None = None  # what loading is doing now, for readiness ("fetching weights")
        self.surface: Surface | None = None  # known once loaded
        self._targets: dict[str, calls.Target] = {}  # extended bundles: method -> what predict's slot calls
        self._parse: Callable[[Any], Any] | None = None
        self._hooks: loader.ModelHooks | None = None
        self._environment: EnvironmentWatch | None = None
        self._wants_request = False

    @classmethod
    def from_dir(cls, bundle_dir: str | Path, *, secrets_dir: str | Path | None = None) -> Runtime:
        """A runtime for the bundle in ``bundle_dir``, its config.yaml read and validated now."""
        return cls(bundle_dir, load_config(bundle_dir), secrets_dir=secrets_dir)

    async def start(self) -> None:
        """Import model.py, build the Model and run its ``load()`` once. Raises ModelLoadError."""
        if self.state is not State.NEW:
            raise RuntimeError(f"start() called on a runtime that is {self.state.value}")
        self._loop = loop = asyncio.get_running_loop()
        self.state = State.LOADING
        try:
            hooks = await on_daemon_thread(loop, self._build)
            if "setup_environment" in hooks.spec.kinds:  # as Truss: told the environment before load()
                self._environment = EnvironmentWatch(hooks.instance.setup_environment,
                                                     hooks.spec.kinds["setup_environment"], self._pool_call)
                await self._environment.first(functools.partial(self._hook_error, hooks))
            load = self._hook(hooks, "load", timed=False, translate=functools.partial(self._load_error, hooks))
            if load is not None and load.kind is HookKind.ASYNC:
                await load.acall(None)
            elif load is not None:
                await on_daemon_thread(loop, load.call, None)
            if self._resolver is not None and not self._resolver.collected:
                await on_daemon_thread(loop, self._await_lazy_fetch)
            self._wire(hooks)
        except ModelLoadError as exc:
            self.state, self.failure = State.FAILED, str(exc)
            raise
        except KingpostError as exc:
            self.state, self.failure = State.FAILED, str(exc)
            raise ModelLoadError(str(exc)) from exc
        self.state, self.activity = State.READY, None
        if self._environment is not None:
            self._environment.start(loop)
        logger.info("%s: model loaded and ready", self.name)

    @property
    def name(self) -> str:
        return self.config.model_name or self.bundle_dir.name

    def predict(self, model_input: Any, *, gone: Callable[[], bool] | None = None) -> Coroutine[Any, Any, Any]:
        """Run one request through the model (await the result); a streaming predict returns a
        :class:`ChunkStream`.

        ``gone`` is the front door's "has the caller gone away?": asked just before predict would
        run, so an abandoned request never takes the predict slot. Without a request timeout this
        is the request's coroutine itself, one await less on the hot path.
        """
        if self._timeout is None:
            return self._run(model_input, None, gone)
        return self._run_with_deadline(model_input, self._timeout, gone)

    async def _run_with_deadline(self, model_input: Any, timeout: float, gone: Callable[[], bool] | None) -> Any:
        try:
            return await asyncio.wait_for(self._run(model_input, time.monotonic() + timeout, gone), timeout)
        except asyncio.TimeoutError:
            self.stats.timed_out += 1
            raise DeadlineExceeded(f"the request took longer than runtime.request_timeout_s "
                                   f"({timeout:g} s).") from None

    async def is_healthy(self) -> bool:
        """Ready and, when the Model defines ``is_healthy``, what it says (an exception means no)."""
        if self.state is not State.READY:
            return False
        if self._healthy is None:
            return True
        try:
            return bool(await self._healthy(None))
        except Exception:
            logger.warning("%s: is_healthy raised; reporting unhealthy", self.name, exc_info=True)
            return False

    @property
    def waiting(self) -> int:
        """Requests that finished preprocess and wait for a predict slot."""
        return self._predictor.waiting if self._predictor is not None else 0

    def invoke(self, value: Any, *, request: Any = None, method: str = "predict",
               gone: Callable[[], bool] | None = None) -> Coroutine[Any, Any, Any]:
        """Run ``method`` (predict with its pre/postprocess, or an OpenAI-style method alone) for a
        bundle whose surface is not plain, handing ``request`` to the hooks that take one.

        Raises MethodNotFoundError when the model has no such method.
        """
        if self.state is not State.READY:
            raise NotReadyError(self._not_ready_reason())
        target = self._targets.get(method)
        if target is None:
            raise MethodNotFoundError(f"the model defines no {method} method.")
        inv = calls.Invocation(value, request, target)
        if self._timeout is None:
            return self._run_invocation(inv, method == "predict", None, gone)
        work = self._run_invocation(inv, method == "predict", time.monotonic() + self._timeout, gone)
        return self._deadline(work, self._timeout)

    async def _deadline(self, work: Coroutine[Any, Any, Any], timeout: float) -> Any:
        try:
            return await asyncio.wait_for(work, timeout)
        except asyncio.TimeoutError:
            self.stats.timed_out += 1
            raise DeadlineExceeded(f"the request took longer than runtime.request_timeout_s "
                                   f"({timeout:g} s).") from None

    async def hold_slot(self, response: Any, gone: Callable[[], bool] | None) -> None:
        """A plain bundle's predict returned a StreamingResponse, and its slot is already free (found
        where the server sends it): take a slot in turn and keep it until ``response`` has been sent.
        From then on such a response keeps its own predict's slot."""
        if self._predictor is not None:
            await self._predictor.hold(response, gone)

    @property
    def plain(self) -> bool:
        """Loaded, and every hook takes just the input: the front doors' fast path serves it."""
        return self.surface is None or self.surface.plain

    def hook(self, name: str) -> Any:
        """A loaded model's bound method (the websocket front door calls ``websocket`` itself)."""
        return self._hooks.hook(name) if self._hooks is not None else None

    async def stop(self) -> None:
        if self._environment is not None:
            self._environment.stop()
        if self._predictor is not None:
            self._predictor.stop()
        self._pool.shutdown()

    async def stopped(self, timeout: float = 5.0) -> None:
        """After :meth:`stop`: until its predict threads and tasks have ended, so that nothing but its
        owner still holds the model (an unloaded model is then freed by one collection)."""
        await asyncio.sleep(0)  # cancelled predict tasks end on the loop's next turn
        if self._predictor is not None:
            await asyncio.to_thread(self._predictor.join, timeout)

    # -- the request path -------------------------------------------------------------------

    async def _run(self, value: Any, deadline: float | None, gone: Callable[[], bool] | None) -> Any:
        if self.state is not State.READY:
            raise NotReadyError(self._not_ready_reason())
        predictor = self._predictor
        assert predictor is not None
        stats = self.stats
        stats.in_flight += 1
        try:
            if self._preprocess is not None:
                predictor.admit()  # a full queue refuses before preprocess spends anything
                value = await self._preprocess(value)
            output = predictor.inline(value, gone)
            value = await predictor.run(value, deadline, gone) if output is QUEUE else output
            if self._postprocess is not None:
                if type(value) is ChunkStream or is_response(value):
                    await _refuse_postprocess(value)
                value = await self._postprocess(value)
            return value
        finally:
            stats.in_flight -= 1

    async def _run_invocation(self, inv: calls.Invocation, pipeline: bool, deadline: float | None,
                              gone: Callable[[], bool] | None) -> Any:
        predictor = self._predictor
        assert predictor is not None
        stats = self.stats
        stats.in_flight += 1
        try:
            if pipeline and self._parse is not None:
                inv.value = self._parse(inv.value)
            if pipeline and self._preprocess is not None:
                predictor.admit()
                inv.value = await self._preprocess(inv)
            value = await predictor.run(inv, deadline, gone)
            if pipeline and self._postprocess is not None:
                if type(value) is ChunkStream or is_response(value):
                    await _refuse_postprocess(value)
                inv.value = value
                value = await self._postprocess(inv)
            return value
        finally:
            stats.in_flight -= 1

    async def _run_default(self, value: Any, deadline: float | None, gone: Callable[[], bool] | None) -> Any:
        """``predict(x)`` of an extended bundle (in process): its request is a POST of ``x`` as JSON."""
        if self.state is not State.READY:
            raise NotReadyError(self._not_ready_reason())
        target = self._targets.get("predict")
        if target is None:
            raise MethodNotFoundError("the model defines no predict method (it serves a websocket only).")
        request = calls.default_request(value) if self._wants_request else None
        return await self._run_invocation(calls.Invocation(value, request, target), True, deadline, gone)

    # -- decided once, at start ---------------------------------------------------------------

    def _build(self) -> loader.ModelHooks:
        loader.apply_environment(self.config)
        spec = loader.import_model_class(self.bundle_dir, self.config)
        fetcher = Fetcher(self.bundle_dir, self.config, secrets_dir=self._secrets_dir)
        if fetcher.sources and loader.waits_for_data(spec):
            self.activity = "fetching weights in the background"
            self._resolver = LazyDataResolver(lambda: fetcher.run(progress=weights_progress()))
        elif fetcher.sources:
            self.activity = "fetching weights"
            fetcher.run(progress=weights_progress())
        resolver = self._resolver or LazyDataResolver(None)
        batching = self.config.runtime.batching
        if batching is not None and spec.streams:
            raise ModelLoadError(f"{self.config.path}: runtime.batching: expected a predict that returns "
                                 "a list (batching cannot be combined with a streaming predict), found a "
                                 "generator predict.")
        if batching is not None and not spec.surface.plain:
            raise ModelLoadError(f"{self.config.path}: runtime.batching: expected a predict(self, model_input) "
                                 "without request, typed input or OpenAI-style methods, found a model that uses "
                                 "them; drop runtime.batching or those.")
        if spec.surface.wants_request:
            _import_starlette(self.config)
        return loader.construct(spec, self.bundle_dir, self.config, self.secrets, data_dir=fetcher.data_dir,
                                extra={"lazy_data_resolver": resolver})

    def _await_lazy_fetch(self) -> None:
        """The Model took a lazy_data_resolver but never waited on it: wait before it is ready."""
        assert self._resolver is not None
        if self._resolver.finished:
            self._resolver.block_until_download_complete(log_stats=False, issue_collect=False)
            return
        logger.warning("%s: the model did not call lazy_data_resolver.block_until_download_complete() in "
                       "__init__ or load(); waiting for the fetch before it serves.", self.name)
        try:
            self._resolver.block_until_download_complete(log_stats=False, issue_collect=False)
        except RuntimeError as exc:
            cause = exc.__cause__
            raise ModelLoadError(str(cause) if isinstance(cause, KingpostError) else str(exc)) from exc

    def _hook_error(self, hooks: loader.ModelHooks, name: str, exc: Exception) -> ModelLoadError:
        where = loader.rel(self.bundle_dir, hooks.spec.file)
        return ModelLoadError(f"{where}: {hooks.spec.cls.__name__}.{name}() raised {describe(exc, end=True)}")

    def _pool_call(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """``await self._pool_call(fn, *args)``: fn on a worker thread of the hook pool."""
        loop = self._loop
        assert loop is not None
        future = loop.create_future()
        self._pool.submit(settle, loop, future, fn, *args)
        return future

    def _load_error(self, hooks: loader.ModelHooks, exc: BaseException) -> ModelLoadError:
        where = loader.rel(self.bundle_dir, hooks.spec.file)
        return ModelLoadError(f"{where}: {hooks.spec.cls.__name__}.load() raised {describe(exc, end=True)}")

    def _wire(self, hooks: loader.ModelHooks) -> None:
        self._hooks = hooks
        self.surface = hooks.spec.surface
        if not self.surface.plain:
            self._wire_extended(hooks)
            return
        self._preprocess = self._stage(self._hook(hooks, "preprocess"))
        self._postprocess = self._stage(self._hook(hooks, "postprocess"))
        self._healthy = self._stage(self._hook(hooks, "is_healthy", timed=False))
        self.streams = hooks.spec.streams
        predict = self._hook(hooks, "predict")
        assert predict is not None and self._loop is not None
        rt = self.config.runtime
        cls = TaskPredictor if predict.kind in (HookKind.ASYNC, HookKind.ASYNC_GENERATOR) else ThreadPredictor
        self._predictor = cls(predict, slots=rt.predict_concurrency, batching=rt.batching, max_queue=rt.max_queue,
                              loop=self._loop, stream_buffer=rt.limits.stream_buffer_bytes)

    def _wire_extended(self, hooks: loader.ModelHooks) -> None:
        """Bind every method to an Invocation (decided here, once); one predictor serves them all."""
        spec, surface, loop = hooks.spec, hooks.spec.surface, self._loop
        assert loop is not None
        self._wants_request = surface.wants_request
        self._run = self._run_default  # type: ignore[method-assign]  # Bundle.predict comes here
        self._parse = calls.validator(surface.input_type) if surface.input_type is not None else None
        bound = {name: calls.bind(getattr(hooks.instance, name), args) for name, args in surface.args.items()}
        self._preprocess = self._stage(self._hook(hooks, "preprocess", fn=bound.get("preprocess")))
        self._postprocess = self._stage(self._hook(hooks, "postprocess", fn=bound.get("postprocess")))
        self._healthy = self._stage(self._hook(hooks, "is_healthy", timed=False))
        self.streams = spec.streams
        methods = [m for m in ("predict", *surface.openai_methods) if m in bound]
        if not methods:
            return  # a websocket model: nothing goes through predict's slots
        threads = spec.kinds.get("predict", HookKind.SYNC) in (HookKind.SYNC, HookKind.SYNC_GENERATOR)
        for m in methods:
            self._targets[m] = (calls.for_threads(bound[m], spec.kinds[m], loop) if threads
                                else calls.for_loop(bound[m], spec.kinds[m], self._pool_call))
        rt = self.config.runtime
        dispatch = Hook(calls.dispatcher(threads), "predict", HookKind.SYNC if threads else HookKind.ASYNC,
                        self.stats)
        room = rt.limits.stream_buffer_bytes  # a method's stream is held back by its client, as predict's
        if threads:
            predictor = ThreadPredictor(dispatch, slots=rt.predict_concurrency, batching=None, max_queue=rt.max_queue,
                                        loop=loop, stream_buffer=room)
            predictor.never_inline()  # an async method's target waits on the loop: never call it there
            self._predictor = predictor
        else:
            self._predictor = TaskPredictor(dispatch, slots=rt.predict_concurrency, batching=None,
                                            max_queue=rt.max_queue, loop=loop, stream_buffer=room)
        self._predictor.hold_responses()  # a StreamingResponse keeps its slot until sent, as in Truss

    def _hook(self, hooks: loader.ModelHooks, name: str, fn: Callable[[Any], Any] | None = None,
              **options: Any) -> Hook | None:
        if fn is None:
            fn = hooks.hook(name)
        if fn is None:
            return None
        if name in ("load", "is_healthy"):
            raw: Callable[[], Any] = fn  # type: ignore[assignment]
            fn = lambda _unused: raw()  # noqa: E731 - same one-argument shape as the other hooks
        return Hook(fn, name, hooks.spec.kinds[name], self.stats, **options)

    def _stage(self, hook: Hook | None) -> Stage | None:
        """How a pre/post hook runs, decided once: async on the loop, sync on the elastic pool."""
        if hook is None:
            return None
        if hook.kind.streams:  # a generator pre/postprocess, as Truss runs it
            return self._generator_stage(hook)
        if hook.kind is HookKind.ASYNC:
            return hook.acall
        assert self._loop is not None
        return in_pool(self._pool, self._loop, hook.call)

    def _generator_stage(self, hook: Hook) -> Stage:
        """A generator preprocess hands predict the generator itself; a generator postprocess's
        output streams, read outside predict's slots (sync ones on worker threads)."""
        loop = self._loop
        assert loop is not None
        pool = self._pool_call
        name, fn, kind = hook.name, hook.fn, hook.kind

        async def call(value: Any) -> Any:
            try:
                generator = fn(value)
            except Exception as exc:
                raise user_error(name, exc) from exc
            if name == "preprocess":
                return generator
            chunks = generator if kind is HookKind.ASYNC_GENERATOR else calls.async_chunks(generator, pool)
            return generator_stream(chunks, name, loop)
        return call

    def _not_ready_reason(self) -> str:
        if self.state is State.FAILED:
            return f"the model failed to load: {self.failure}"
        return f"the model is {self.state.value}; retry shortly."



async def _refuse_postprocess(value: Any) -> None:
    """Truss's two outputs of predict that a postprocess cannot take (a load-time check cannot see them)."""
    if type(value) is ChunkStream:
        await value.aclose()
        raise ModelError("predict", "predict returned a generator, so its output streams, and a "
                                    "streaming predict cannot have a postprocess")
    if is_response(value):
        raise ModelError("predict", "predict returned a response object, so it cannot have a postprocess "
                                    "(as in Truss); move that work into predict or drop postprocess")


def _import_starlette(config: Config) -> None:
    """A hook takes a request: the request class (Starlette's) must be importable, said at load."""
    try:
        import starlette.requests  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModelLoadError(f"{config.path.parent}: a hook takes a request, which needs starlette (or fastapi) "
                             "installed; add it to the bundle's requirements or install it.") from exc
