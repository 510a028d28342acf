"""The predict lock: ``predict_concurrency`` slots, each a worker pulling jobs from one queue.

    jobs.py              Job, and the queue base both predictors share (admission, liveness)
    batching.py          checking a batched predict's output and handing each job its own item
    streams.py           ChunkStream: the output of a streaming predict, read with ``async for``
    thread_predictor.py  a sync predict on dedicated threads (one per slot), or on the loop while faster
    task_predictor.py    an async predict on worker tasks on the event loop

A sync predict runs on dedicated threads (one per slot) that take the next job the moment the
previous predict returns, so predict never waits for the event loop between jobs. A sync predict
that has proved faster than that hand-off (its last ``INLINE_AFTER`` calls each under
``INLINE_MAX_S``) is called on the event loop itself while a slot is free, since handing it to a
thread would cost more than the predict; so predict may run on any predict thread or on the loop's
thread, and must not rely on thread-local state. An async predict runs on the same number of worker
tasks on the loop. With batching, a worker gathers up to ``max_batch_size`` jobs, waiting at most
``max_wait_ms`` after the oldest arrived, and is the only caller of ``predict(list)``. A streaming
predict keeps its worker (its slot) until the generator ends, fails or is abandoned by its consumer.
With one slot, a generator predict whose streams proved fast (``INLINE_AFTER`` streams in a row
with their ``next()`` calls under ``INLINE_MAX_S``) is driven on the loop itself, one ``next()`` per
chunk its reader takes, while the jobs that arrive wait for the slot; a ``next()`` that proves slow
hands the rest of that stream to the predict thread.
"""
