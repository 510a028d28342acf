"""Every default kingpost ships with, in one place: the values a production server starts with.

Each is also a setting (a CLI option, a function argument, a config.yaml key or an environment
variable, named beside it) and documented where that setting is.
"""

HOST = "127.0.0.1"  # --host: loopback unless told otherwise
PORT = 8080  # --port of kingpost serve, and the port a container image serves on
GRACE_PERIOD_S = 30.0  # --grace-period: how long SIGTERM lets in-flight requests finish
KEEP_ALIVE_S = 30  # an idle keep-alive connection is closed after this
LISTEN_BACKLOG = 2048  # connections the kernel queues before accept()
SWITCH_INTERVAL_S = 0.0005  # $KINGPOST_SWITCH_INTERVAL: the GIL hand-off interval while serving
SECRETS_DIR = "/secrets"  # --secrets-dir / $KINGPOST_SECRETS_DIR: where Truss images mount secrets
MAX_REQUEST_BYTES = 100 * 1024 * 1024  # runtime.max_request_bytes
STREAMING_READ_TIMEOUT_S = 60.0  # runtime.streaming_read_timeout (Truss's)

DOWNLOAD_WORKERS = 8  # $KINGPOST_DOWNLOAD_WORKERS: files fetched at once (model_cache, weights, external_data)
DOWNLOAD_TIMEOUT_S = 60.0  # $KINGPOST_DOWNLOAD_TIMEOUT: a download that sends nothing this long is retried
DOWNLOAD_RETRIES = 3  # a download cut mid-file is resumed this many times before the fetch fails
IMAGE_CACHE_DIR = "/var/cache/kingpost"  # KINGPOST_CACHE_DIR in a container image (fetched weights)

RAY_PORT = 8000  # kingpost ray --port: Ray Serve's HTTP proxy
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
