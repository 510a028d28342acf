"""Every default kingpost ships with, in one place: the values a production server starts with.

Each is also a setting (a CLI option, a function argument, a config.yaml key or an environment
variable, named beside it) and documented where that setting is.
"""

HOST = "127.0.0.1"  # --host: loopback unless told otherwise
PORT = 8080  # --port of kingpost serve, and the port a container image serves on
GRACE_PERIOD_S = 30.0  # --grace-period: how long SIGTERM lets in-flight requests finish
KEEP_ALIVE_S = 30  # runtime.limits.idle_timeout_s: an idle keep-alive connection is closed after this
LISTEN_BACKLOG = 2048  # connections the kernel queues before accept()
SWITCH_INTERVAL_S = 0.0005  # $KINGPOST_SWITCH_INTERVAL: the GIL hand-off interval while serving
SECRETS_DIR = "/secrets"  # --secrets-dir / $KINGPOST_SECRETS_DIR: where Truss images mount secrets
MAX_REQUEST_BYTES = 16 * 1024 * 1024  # runtime.max_request_bytes

# The server's guards (runtime.limits.<name>; see kingpost/limits.py for what each bounds).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 60.0
MAX_CONNECTIONS = 4096
WRITE_TIMEOUT_S = 60.0
STREAM_BUFFER_BYTES = 1024 * 1024  # a stream's unread chunks (kingpost/predictor/streams.py says how they count)
MAX_DECODE_ELEMENTS = 1_000_000
MAX_DECODE_DEPTH = 64
DECODE_IN_THREAD_BYTES = 1024 * 1024
PREDICT_STUCK_S = 600.0
WORKER_RESTART_BACKOFF_S = (0.5, 30.0)  # a dead worker is restarted after 0.5 s, doubling to 30 s
STREAMING_READ_TIMEOUT_S = 60.0  # runtime.streaming_read_timeout (Truss's)

DOWNLOAD_WORKERS = 8  # $KINGPOST_DOWNLOAD_WORKERS: files fetched at once (model_cache, weights, external_data)
DOWNLOAD_TIMEOUT_S = 60.0  # $KINGPOST_DOWNLOAD_TIMEOUT: a download that sends nothing this long is retried
DOWNLOAD_RETRIES = 3  # a download cut mid-file is resumed this many times before the fetch fails
IMAGE_CACHE_DIR = "/var/cache/kingpost"  # KINGPOST_CACHE_DIR in a container image (fetched weights)

RAY_PORT = 8000  # kingpost ray --port: Ray Serve's HTTP front door (HAProxy or its proxy)
RAY_DRAIN_S = 2  # $RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S behind kingpost ray's HAProxy (Serve: 30)
RAY_TIMEOUT_S = 300.0  # kingpost ray --timeout: for the cluster and the replicas to come up
RAY_MAX_ONGOING_REQUESTS = 128  # per replica, unless runtime.ray or the queue asks for more

CLIENT_TIMEOUT_S = 60.0  # kingpost.Client(timeout=) / kingpost call --timeout: per attempt
CLIENT_RETRIES = 3  # kingpost.Client(retries=) / kingpost call --retries: on a refused connection or a 503
CLIENT_BACKOFF_S = 0.25  # kingpost.Client(backoff=): the first retry's wait, doubled each time (with jitter)
CLIENT_MAX_BACKOFF_S = 10.0  # kingpost.Client(max_backoff=)
CLIENT_MAX_RETRY_AFTER_S = 60.0  # the longest Retry-After the client honours
CLIENT_WAIT_READY_S = 60.0  # kingpost.Client.wait_ready(timeout=): how long a model may take to load

RELOAD_DEBOUNCE_MS = 100  # serve --reload: changes gathered this long into one reload
RELOAD_RETIRE_TIMEOUT_S = 300.0  # the longest a replaced version waits for its requests (a long stream) to end

# Async jobs (kingpost.jobs.settings: --jobs-dir / --jobs-database turn them on)
JOB_PRIORITY = 1  # a submit's priority (0 runs first, 2 last)
JOB_QUEUE_S = 600  # a submit's max_time_in_queue_seconds
JOBS_SHARE = 0.5  # $KINGPOST_JOBS_SHARE: the share of predict slots jobs may hold (at least one)
JOBS_RERUN = True  # $KINGPOST_JOBS_RERUN: a job whose worker died runs again (else: interrupted)
JOBS_LEASE_S = 30.0  # $KINGPOST_JOBS_LEASE_S: a worker's lease on a running job, renewed every third
JOBS_POLL_S = 0.5  # $KINGPOST_JOBS_POLL_S: how often an idle worker looks for others' jobs and expiries
JOBS_RETENTION_S = 7 * 24 * 3600.0  # $KINGPOST_JOBS_RETENTION_S: finished jobs and outputs are kept this long
WEBHOOK_ATTEMPTS = 8  # $KINGPOST_WEBHOOK_ATTEMPTS: deliveries tried in all
WEBHOOK_DELAY_S = 1.0  # $KINGPOST_WEBHOOK_DELAY_S: the first retry's delay, doubling
WEBHOOK_MAX_DELAY_S = 300.0  # the cap on that delay
WEBHOOK_TIMEOUT_S = 10.0  # $KINGPOST_WEBHOOK_TIMEOUT_S: for one delivery's answer

API_KEYS_FILE = "kingpost_api_keys"  # <secrets dir>/<this>: API keys, one a line (also --api-key, $KINGPOST_API_KEY)
CORS_MAX_AGE_S = 600  # --cors-max-age / runtime.cors.max_age: how long a browser caches a preflight
LOG_FORMAT = "text"  # --log-format / $KINGPOST_LOG_FORMAT: text or json

K8S_MIN_REPLICAS, K8S_MAX_REPLICAS = 1, 4  # kingpost k8s --min-replicas / --max-replicas
K8S_STARTUP_S = 600  # kingpost k8s --startup-timeout: how long the model may take to load in a pod
K8S_CPU_TARGET = 70  # the HPA's average CPU utilization target, percent
K8S_QUEUE_TARGET = 4  # kingpost k8s --autoscale-on queue: kingpost_queue_depth per pod the HPA aims at
