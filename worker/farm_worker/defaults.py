"""Every default of the worker, in one place, with its unit and what it bounds."""

# Payload
PAYLOAD_MAX_BYTES = 1024 * 1024  # a gearman payload larger than this is rejected unread
MAX_TEST_ID_LEN = 64
DEFAULT_TIMEOUT_S = 3600  # wall time of one Tempest run before it is killed (timed_out)
MAX_TIMEOUT_S = 7 * 24 * 3600  # the largest timeout_s a payload may ask for
# Older releases cannot be locked to a working set on Python 3.11 (FIELD_NOTES).
OLDEST_TEMPEST = (33, 0, 0)

# Gearman
GEARMAN_PORT = 4730
GEARMAN_CONNECT_TIMEOUT_S = 30.0  # waiting for the first gearmand at start-up

# Running Tempest
TEMPEST_CONCURRENCY = 2  # stestr workers per job
PROGRESS_INTERVAL_S = 1.0  # at most 1 progress event (and report) a second, a live view's pace
KILL_GRACE_S = 3.0  # SIGTERM to the Tempest process group, then SIGKILL after this
PREFLIGHT_TIMEOUT_S = 15.0  # each request of the check of the conf against its cloud
DISCOVERY_TIMEOUT_S = 600.0  # python-tempestconf's discovery (an image upload included)
LIST_TIMEOUT_S = 300  # `tempest run --list-tests` and other short Tempest commands

# Reporting to the callback server
REPORT_TIMEOUT_S = 10.0  # one HTTP request
REPORT_RETRY_S = 300.0  # how long a job's fetch (miniconf, testcases, accounts) is retried
REPORT_BACKOFF_S = (0.5, 30.0)  # first and largest pause between retries
FLUSH_TIMEOUT_S = 60.0  # at the end of a job (and at exit), wait this long for its reports
OUTBOX_KEEP_S = 7 * 86400  # an outbox entry undelivered this long is set aside
OUTBOX_MAX_BYTES = 1024**3  # an outbox this large takes no new job until it drains
RESULTS_KEEP_DAYS = 7.0  # subunit files kept in results_dir after their job

# Environments
INDEX_URL = "https://pypi.org/simple"
BUILD_TIMEOUT_S = 1800  # locking, downloading and building one Tempest version
SMOKE_MIN_TESTS = 1000  # a prepared Tempest must list more tests than this
CACHE_MAX_BYTES = 20 * 1024**3  # LRU eviction bound of templates and wheelhouses
LOCK_WAIT_S = 3600  # waiting for another process preparing the same environment
