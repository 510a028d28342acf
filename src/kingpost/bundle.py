"""The in-process front door: ``kingpost.load(DIR)`` returns a :class:`Bundle`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kingpost.concurrency import LoopThread
from kingpost.config import Config, load_config, read_examples
from kingpost.errors import BundleError
from kingpost.loader import require_model_file
from kingpost.predictor.held import sent
from kingpost.predictor.streams import ChunkStream
from kingpost.runtime import Runtime
from kingpost.types import State, Stream
from kingpost.unsupported import refuse_unsupported

if TYPE_CHECKING:
    from kingpost.jobs import JobHandle, JobService


class Bundle:
    """A bundle directory: its validated config, its examples, and predictions in this process.

    Nothing of the user's code runs until the first :meth:`predict`, which imports model.py,
    builds the Model and runs its ``load()`` once. The model then lives on a background event
    loop, so ``predict`` works from plain scripts, from threads, and from a Jupyter cell that
    already runs a loop.
    """

    def __init__(self, bundle_dir: str | Path, config: Config | None = None, *, secrets_dir: str | Path | None = None,
                 jobs: str | Path | None = None):
        self.bundle_dir = Path(bundle_dir)
        if not self.bundle_dir.is_dir():
            raise BundleError(f"{self.bundle_dir}: expected a bundle directory, found "
                              f"{'a file' if self.bundle_dir.exists() else 'nothing'}.")
        self.config = config if config is not None else load_config(self.bundle_dir)
        refuse_unsupported(self.config)
        require_model_file(self.bundle_dir, self.config)
        self._secrets_dir = secrets_dir
        self._runtime: Runtime | None = None
        self._loading: asyncio.Future[None] | None = None
        self._start_lock = threading.Lock()
        self._jobs_location = jobs
        self._jobs: JobService | None = None
        self._jobs_started: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"Bundle({str(self.bundle_dir)!r}, name={self.name!r})"

    @property
    def name(self) -> str:
        return self.config.model_name or self.bundle_dir.resolve().name

    @property
    def state(self) -> State:
        return self._runtime.state if self._runtime is not None else State.NEW

    @property
    def streams(self) -> bool:
        """Whether predict streams (known once the model is loaded)."""
        return self._runtime is not None and self._runtime.streams

    def examples(self) -> dict[str, Any]:
        """The bundle's examples.yaml as ``{name: input}`` (empty when there is none)."""
        return read_examples(self.bundle_dir / self.config.examples_filename)

    def predict(self, model_input: Any = None, *, example: str | None = None) -> Any:
        """Pre-process, predict and post-process one input; an iterator of chunks when predict streams."""
        runtime = self._started()
        value = self._input(model_input, example)
        result = _LOOP.call(runtime.predict(value))
        if type(result) is ChunkStream:
            return Chunks(result)
        sent(result)  # a StreamingResponse handed to the caller keeps no predict slot (only a server's does)
        return result

    async def apredict(self, model_input: Any = None, *, example: str | None = None) -> Any:
        """Like :meth:`predict`, for async callers; a stream is an async iterator."""
        runtime = await asyncio.wrap_future(_LOOP.submit(self._astarted()))
        value = self._input(model_input, example)
        result = await asyncio.wrap_future(_LOOP.submit(runtime.predict(value)))
        if type(result) is ChunkStream:
            return _async_chunks(result)
        sent(result)
        return result

    def submit(self, model_input: Any = None, *, example: str | None = None, priority: int | None = None,
               max_time_in_queue_seconds: int | None = None, retry: dict[str, int] | None = None,
               webhook_endpoint: str | None = None, idempotency_key: str | None = None) -> JobHandle:
        """Store ``model_input`` as a durable async job and return its handle at once.

        The job runs here (on this process's loop, through the same runtime as :meth:`predict`)
        and on any server sharing the store: ``kingpost.load(DIR, jobs=DIR_OR_URL)``, else
        ``KINGPOST_JOBS_DIR`` / ``KINGPOST_JOBS_DATABASE``. ``retry`` is Baseten's
        ``inference_retry_config`` ({max_attempts, initial_delay_ms, max_delay_ms}).
        """
        from kingpost.jobs import JobHandle, make_submit

        spec = make_submit(self._input(model_input, example), priority=priority,
                           max_time_in_queue_seconds=max_time_in_queue_seconds, retry=retry,
                           webhook_endpoint=webhook_endpoint, idempotency_key=idempotency_key)
        service = _LOOP.call(self._job_service())
        job, _ = _LOOP.call(service.submit(spec))
        return JobHandle(job.id, self._job_verb)

    def _job_verb(self, verb: str, job_id: str) -> dict[str, Any] | None:
        service = _LOOP.call(self._job_service())

        async def run() -> dict[str, Any] | None:
            job = await (service.cancel(job_id) if verb == "cancel" else service.get(job_id))
            return None if job is None else await service.view(job)
        view: dict[str, Any] | None = _LOOP.call(run())
        return view

    async def _job_service(self) -> JobService:
        from kingpost.jobs import JobService, JobSettings
        from kingpost.jobs.settings import OFF_SENTENCE

        runtime = await self._astarted()
        with self._start_lock:
            if self._jobs is None:
                location = str(self._jobs_location) if self._jobs_location is not None else None
                settings = JobSettings.from_env(jobs_database=location)
                if not settings.enabled:
                    raise BundleError(OFF_SENTENCE.replace("on this server; start it with",
                                                           "for this bundle; open it with kingpost.load(DIR, "
                                                           "jobs=DIR_OR_URL), or set"))
                self._jobs = JobService(runtime, settings)
                self._jobs_started = asyncio.ensure_future(self._jobs.start())
        assert self._jobs_started is not None
        await asyncio.shield(self._jobs_started)
        return self._jobs

    def load_model(self) -> None:
        """Load the model now instead of on the first predict."""
        self._started()

    def reload(self) -> None:
        """Load the bundle's files as they are on disk now, beside the running version, and switch
        to them once loaded; calls already running finish on the old version.

        A version that fails to load raises (ConfigError, ModelLoadError) and the old one stays.
        """
        _LOOP.call(self._areload())

    async def _areload(self) -> None:
        from kingpost.reloading import load_version, retire

        new = await load_version(self.bundle_dir, secrets_dir=self._secrets_dir)
        with self._start_lock:
            old, self._runtime, self.config = self._runtime, new, new.config
            self._loading = asyncio.get_running_loop().create_future()
            self._loading.set_result(None)
        if old is not None:
            task = asyncio.get_running_loop().create_task(retire(old))
            _RETIRING.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(_RETIRING.discard)

    def close(self) -> None:
        if self._jobs is not None:
            _LOOP.call(self._jobs.stop())
            self._jobs = None
        if self._runtime is not None:
            _LOOP.call(self._runtime.stop())
            self._runtime = None

    def _input(self, model_input: Any, example: str | None) -> Any:
        if example is None:
            return model_input
        examples = self.examples()
        if example not in examples:
            names = ", ".join(sorted(examples)) or "none"
            raise BundleError(f"{self.bundle_dir / self.config.examples_filename}: no example named {example!r} "
                              f"(examples: {names}).")
        return examples[example]

    def _started(self) -> Runtime:
        runtime: Runtime = _LOOP.call(self._astarted())
        return runtime

    async def _astarted(self) -> Runtime:
        with self._start_lock:
            runtime = self._runtime
            if runtime is None:
                runtime = self._runtime = Runtime(self.bundle_dir, self.config, secrets_dir=self._secrets_dir)
                self._loading = asyncio.ensure_future(runtime.start())
        assert self._loading is not None
        await asyncio.shield(self._loading)
        return runtime


_LOOP = LoopThread()
_RETIRING: set[asyncio.Task[None]] = set()  # replaced runtimes waiting for their last call (Bundle.reload)


class Chunks(Iterator[Any]):
    """The chunks of a streaming predict, for sync callers; ``close()`` abandons the rest."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream
        self._closed = False

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            return _LOOP.call(self._stream.__anext__())
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            _LOOP.call(self._stream.aclose())

    def __del__(self) -> None:  # abandoned unread: free the predict slot, without waiting (may run at exit)
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                _LOOP.submit(self._stream.aclose())


async def _async_chunks(stream: Any) -> Any:
    try:
        while True:
            try:
                yield await asyncio.wrap_future(_LOOP.submit(stream.__anext__()))
            except StopAsyncIteration:
                return
    finally:
        await asyncio.wrap_future(_LOOP.submit(stream.aclose()))
