"""Job state in Redis: the spec, exact counters, failed keys, and the state machine.

States: ``listing`` (keys still streaming into the queue; batches may already be running),
``running`` (listing finished, batches outstanding), ``done`` (every listed key has an outcome),
``failed`` (the job itself could not proceed, e.g. the source does not exist; per-key failures
do not fail the job, they are counted and listed), ``cancelled`` (``arcnn cancel``: its queued
work is skipped). The last three are final: nothing changes a finished job's counts.

Counts stay exact although delivery is at-least-once (a killed worker's batch is redelivered and
partly redone): every key is identified by (batch number, index in batch), and each change is a
Lua script, so it is atomic and the first outcome recorded for a key is the only one counted.
Per-key bookkeeping lives only while its batch is open (a Redis set per in-flight batch); a
finished batch collapses to one bit, so memory does not grow with the size of the job.

Keys (``{j}`` is ``arcnn:job:<id>``): ``{j}`` hash (spec, state, counters), ``{j}:failed`` hash
(key -> JSON reason), ``{j}:warnings`` hash (key -> what its output gave up; the first
:data:`WARNINGS_KEPT`, all of them counted), ``{j}:batches`` bitmap (finished batches), ``{j}:b:<n>`` set (recorded
indices of open batch n), ``{j}:attempts`` hash (starts of unfinished keys, for poison detection),
``{j}:sent`` hash (every message of the job sent and not yet finished: ``b<n>`` batch n, ``l<n>``
the listing chunk from batch n; what :mod:`worker.redelivery` sends again when one is lost),
``{j}:missing`` hash (when the redelivery sweep first saw a sent message nowhere in Redis),
``{j}:running`` hash (message -> the worker that started it, whose heartbeat the sweep checks);
``arcnn:jobs`` sorted set of job ids by creation time; ``arcnn:jobs:active`` set of unfinished jobs.

Only messages the job sent are accepted: a batch number outside ``0 <= n < batches_sent``, or a
message naming a job that no longer exists or has ended, changes nothing (and creates no key).

Nothing a job leaves in Redis lives forever: a finished or failed job's keys expire
:data:`JOB_TTL_SECONDS` after it ends, every key a job creates carries :data:`JOB_MAX_AGE_SECONDS`
from its creation (so a job whose listing or batches were lost does not stay behind), and the
index drops entries older than that whenever a job is created (and expires itself when no job
has been created for that long).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from arcnn.jobs.spec import JobSpec

JOBS_INDEX = "arcnn:jobs"
LIST_TASK = "arcnn.list_job"
RESTORE_TASK = "arcnn.restore_batch"
"""Task names (:mod:`worker.tasks`), as the job store records the messages it keeps."""
ACTIVE_JOBS = "arcnn:jobs:active"
"""Unfinished jobs, for the redelivery sweep; ended jobs are dropped from it as it meets them."""
JOB_TTL_SECONDS = 7 * 24 * 3600
"""Finished jobs (and their failed-key lists) are kept this long, then Redis drops them."""
JOB_MAX_AGE_SECONDS = 30 * 24 * 3600
"""The longest any job's state is kept, finished or not (a job still running after this long
loses its state: no job should)."""

COUNTER_OF = {"restored": "done", "passed_through": "passed_through", "skipped": "skipped", "failed": "failed"}
"""Outcome of one key (:data:`arcnn.jobs.spec.OUTCOMES`) -> job counter (``done`` counts
images a model restored, ``passed_through`` those no model was applied to)."""

TERMINAL = ("done", "failed", "cancelled")

WARNINGS_KEPT = 1000
"""Warned keys whose text is kept per job (all are counted): a job writing a million RGBA PNGs
as JPEG should not store a million copies of "alpha dropped"."""


@dataclass
class JobStatus:
    """A snapshot of one job, as ``arcnn status`` shows it."""

    id: str
    state: str
    spec: JobSpec
    total: int = 0
    done: int = 0
    passed_through: int = 0
    skipped: int = 0
    failed: int = 0
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    failed_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    warned: int = 0
    """Restored keys whose output gave something up (alpha in a JPEG, 16 bits in 8)."""
    warnings: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    """The job's own inference settings (``enqueue --tier``, ``--precision``)."""

    @property
    def settled(self) -> int:
        return self.done + self.passed_through + self.skipped + self.failed

    @property
    def progress(self) -> float:
        """Fraction of listed keys with an outcome (0 while nothing is listed yet)."""
        return self.settled / self.total if self.total else (1.0 if self.state == "done" else 0.0)

    @property
    def throughput(self) -> float:
        """Images per second since the first key started (until the job finished)."""
        if self.started is None:
            return 0.0
        elapsed = (self.finished or time.time()) - self.started
        return self.settled / elapsed if elapsed > 0 else 0.0

    @property
    def note(self) -> str | None:
        """A word for a finished job that found nothing to do (an empty or mistyped prefix)."""
        if self.state == "done" and self.total == 0:
            include = f" matching {self.spec.include}" if self.spec.include else ""
            return f"no keys matched: {self.spec.src} holds no images{include}"
        return None

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(progress=self.progress, throughput=self.throughput, note=self.note)
        return data


_BATCH_SENT = """
-- KEYS: job, sent. ARGV: batch_no, n_keys, cursor, message JSON, max age.
-- Count a sent batch once (listing may be redone) and keep its message until it is finished.
if tonumber(redis.call('HGET', KEYS[1], 'batches_sent') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'batches_sent', 1)
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
redis.call('HSET', KEYS[1], 'list_cursor', ARGV[3])
redis.call('HSET', KEYS[2], 'b' .. ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

_OPEN_BATCH = """
-- A message's batch: -2 if it is not one the job sent (or the job is gone), -1 if there is
-- nothing left to do (the batch is finished or the job has ended), else 0.
local function open_batch(job, batches, batch_no)
  local h = redis.call('HMGET', job, 'state', 'batches_sent')
  if not h[1] then return -2 end
  local n = tonumber(batch_no)
  if not n or n < 0 or n >= tonumber(h[2] or '0') or n ~= math.floor(n) then return -2 end
  if h[1] == 'done' or h[1] == 'failed' or h[1] == 'cancelled' then return -1 end
  if redis.call('GETBIT', batches, n) == 1 then return -1 end
  return 0
end
"""

_MAYBE_DONE = """
local function maybe_done(job, now, ttl, keys)
  local h = redis.call('HMGET', job, 'listing_done', 'batches_sent', 'batches_finished', 'state')
  if h[1] == '1' and tonumber(h[2] or '0') == tonumber(h[3] or '0') and h[4] ~= 'done' then
    redis.call('HSET', job, 'state', 'done', 'finished', now)
    for _, k in ipairs(keys) do redis.call('EXPIRE', k, ttl) end
  end
end
"""

_LISTING_DONE = _MAYBE_DONE + """
-- KEYS: job, failed, batches, attempts, warnings, sent, missing, running.
-- ARGV: now, ttl, chunk's first batch.
if not redis.call('HGET', KEYS[1], 'state') then return end
redis.call('HDEL', KEYS[6], 'l' .. ARGV[3])
redis.call('HDEL', KEYS[7], 'l' .. ARGV[3])
redis.call('HSET', KEYS[1], 'listing_done', '1')
if redis.call('HGET', KEYS[1], 'state') == 'listing' then
  redis.call('HSET', KEYS[1], 'state', 'running')
end
maybe_done(KEYS[1], ARGV[1], ARGV[2], KEYS)
"""

_BEGIN = _OPEN_BATCH + """
-- KEYS: job, batch set, batches bitmap, attempts. ARGV: batch_no, index, now, max age.
-- Returns -2 for a batch the job never sent, -1 if the key already has an outcome (or the job
-- has ended), else how many times it has been started.
local open = open_batch(KEYS[1], KEYS[3], ARGV[1])
if open < 0 then return open end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return -1 end
redis.call('HSETNX', KEYS[1], 'started', ARGV[3])
local starts = redis.call('HINCRBY', KEYS[4], ARGV[1] .. ':' .. ARGV[2], 1)
redis.call('EXPIRE', KEYS[4], ARGV[4])
return starts
"""

_RECORD = _OPEN_BATCH + """
-- KEYS: job, batch set, batches bitmap, attempts, failed, warnings.
-- ARGV: batch_no, index, counter, key, failure JSON ('' unless failed), warning, warnings kept,
--       max age.
-- Returns 1 if this was the key's first outcome (and was counted), else 0.
if open_batch(KEYS[1], KEYS[3], ARGV[1]) < 0 then return 0 end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('HDEL', KEYS[4], ARGV[1] .. ':' .. ARGV[2])
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[4], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[8])
end
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[1], 'warned', 1)
  if redis.call('HLEN', KEYS[6]) < tonumber(ARGV[7]) then
    redis.call('HSET', KEYS[6], ARGV[4], ARGV[6])
    redis.call('EXPIRE', KEYS[6], ARGV[8])
  end
end
return 1
"""

_FINISH_BATCH = _MAYBE_DONE + _OPEN_BATCH + """
-- KEYS: job, failed, batches, attempts, warnings, sent, missing, running, batch set.
-- ARGV: batch_no, now, ttl, max age, seconds the batch took, bytes it restored.
if open_batch(KEYS[1], KEYS[3], ARGV[1]) < 0 then return 0 end
if tonumber(ARGV[6]) > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'cost_seconds', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'cost_bytes', ARGV[6])
end
redis.call('SETBIT', KEYS[3], ARGV[1], 1)
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[9])
redis.call('HDEL', KEYS[6], 'b' .. ARGV[1])
redis.call('HDEL', KEYS[7], 'b' .. ARGV[1])
redis.call('HINCRBY', KEYS[1], 'batches_finished', 1)
maybe_done(KEYS[1], ARGV[2], ARGV[3], {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]})
return 1
"""

_CONTINUED = """
-- KEYS: job, sent. ARGV: this chunk's first batch, the continuation's, its message JSON, max age,
--       seconds per byte the continuation sizes its batches by.
-- The listing hands over: the continuation is recorded as sent before it is queued.
if not redis.call('HGET', KEYS[1], 'state') then return 0 end
redis.call('HSET', KEYS[1], 'list_next', ARGV[2], 'list_rate', ARGV[5])
redis.call('HSET', KEYS[2], 'l' .. ARGV[2], ARGV[3])
redis.call('HDEL', KEYS[2], 'l' .. ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


_END = """
-- KEYS: the job's keys (job first). ARGV: state, error, now, ttl.
-- End an unfinished job (failed, cancelled); an ended or unknown job is left as it is.
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'done' or state == 'failed' or state == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished', ARGV[3])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[2]) end
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[4]) end
return 1
"""


def message(task: str, args: list) -> str:
    """A sent message as the job store keeps it (JSON ``[task name, args]``) until it is finished."""
    return json.dumps([task, args])


def connect(url: str, retries: int = 20, timeout: float = 30.0) -> redis.Redis:
    """A Redis client that rides out a Redis restart: by default commands retry with backoff for
    about a minute (``retries=0`` and a short ``timeout`` for a client that must answer now)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=min(5.0, timeout),
        socket_timeout=timeout,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


class JobStore:
    """All reads and writes of job state; safe to share between threads."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._batch_sent = client.register_script(_BATCH_SENT)
        self._listing_done = client.register_script(_LISTING_DONE)
        self._begin = client.register_script(_BEGIN)
        self._record = client.register_script(_RECORD)
        self._finish_batch = client.register_script(_FINISH_BATCH)
        self._continued = client.register_script(_CONTINUED)
        self._open = client.register_script(_OPEN_BATCH + "return open_batch(KEYS[1], KEYS[3], ARGV[1])")
        self._end = client.register_script(_END)

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(connect(url))

    @staticmethod
    def _key(job_id: str, suffix: str = "") -> str:
        return f"arcnn:job:{job_id}{suffix}"

    def _keys(self, job_id: str) -> list[str]:
        return [self._key(job_id, s) for s in ("", ":failed", ":batches", ":attempts", ":warnings",
                                                 ":sent", ":missing", ":running")]

    def create(self, spec: JobSpec, options: dict[str, str] | None = None) -> str:
        """Record a new job and its first listing message (:data:`LIST_TASK` from batch 0), which
        the caller then queues with :func:`worker.redelivery.task_id` ``(job, "l0")``.

        ``options`` are the job's own inference settings (``tier``, ``precision``), applied by
        every worker to this job's keys instead of the worker's defaults.
        """
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        fields = {"spec": json.dumps(asdict(spec)), "options": json.dumps(options or {}),
                  "state": "listing", "created": now,
                  "total": 0, "done": 0, "passed_through": 0, "skipped": 0, "failed": 0,
                  "batches_sent": 0, "batches_finished": 0, "list_cursor": ""}
        with self.redis.pipeline() as pipe:
            pipe.hset(self._key(job_id), mapping=fields)
            pipe.expire(self._key(job_id), JOB_MAX_AGE_SECONDS)
            pipe.hset(self._key(job_id, ":sent"), "l0", message(LIST_TASK, [job_id, 0]))
            pipe.expire(self._key(job_id, ":sent"), JOB_MAX_AGE_SECONDS)
            pipe.sadd(ACTIVE_JOBS, job_id)
            pipe.expire(ACTIVE_JOBS, JOB_MAX_AGE_SECONDS)
            pipe.zadd(JOBS_INDEX, {job_id: now})
            pipe.zremrangebyscore(JOBS_INDEX, "-inf", now - JOB_MAX_AGE_SECONDS)
            pipe.expire(JOBS_INDEX, JOB_MAX_AGE_SECONDS)
            pipe.execute()
        return job_id

    def options(self, job_id: str) -> dict[str, str]:
        """The job's own inference settings (empty: the workers' defaults)."""
        return json.loads(self.redis.hget(self._key(job_id), "options") or "{}")

    def spec(self, job_id: str) -> JobSpec:
        raw = self.redis.hget(self._key(job_id), "spec")
        if raw is None:
            raise KeyError(job_id)
        return JobSpec(**json.loads(raw))

    def list_cursor(self, job_id: str) -> tuple[int, str]:
        """(batches already sent, last key sent): where a redelivered listing resumes."""
        sent, cursor = self.redis.hmget(self._key(job_id), "batches_sent", "list_cursor")
        return int(sent or 0), cursor or ""

    def listing_position(self, job_id: str) -> tuple[bool, int]:
        """(listing finished?, first batch of the newest queued listing continuation)."""
        done, continued = self.redis.hmget(self._key(job_id), "listing_done", "list_next")
        return done == "1", int(continued or 0)

    def continued(self, job_id: str, chunk: int, from_batch: int, sent: str, rate: float) -> bool:
        """Record the listing continuation starting at ``from_batch`` (message ``sent``) before it
        is queued, in place of this chunk's own record, with the seconds per byte it will size
        its batches by; False if the job no longer exists."""
        return bool(self._continued(keys=[self._key(job_id), self._key(job_id, ":sent")],
                                    args=[chunk, from_batch, sent, JOB_MAX_AGE_SECONDS, rate]))

    def batch_sent(self, job_id: str, batch_no: int, n_keys: int, last_key: str, sent: str) -> bool:
        """Count batch ``batch_no`` and keep its message (``sent``) until it is finished; False if
        it was already counted (a redelivered listing), in which case it must not be queued again."""
        return bool(self._batch_sent(keys=[self._key(job_id), self._key(job_id, ":sent")],
                                     args=[batch_no, n_keys, last_key, sent, JOB_MAX_AGE_SECONDS]))

    def listing_done(self, job_id: str, chunk: int) -> None:
        """The listing chunk from batch ``chunk`` was the last: every key has been sent."""
        self._listing_done(keys=self._keys(job_id), args=[time.time(), JOB_TTL_SECONDS, chunk])

    def fail(self, job_id: str, error: str) -> bool:
        """The job as a whole failed (its source cannot be listed, its model does not exist)."""
        return bool(self._end(keys=self._keys(job_id), args=["failed", error, time.time(), JOB_TTL_SECONDS]))

    def cancel(self, job_id: str) -> bool:
        """End an unfinished job: its queued batches find nothing to do. False if it had ended."""
        return bool(self._end(keys=self._keys(job_id), args=["cancelled", "", time.time(), JOB_TTL_SECONDS]))

    def active(self) -> list[str]:
        """Unfinished jobs; those that have ended (or expired) are dropped from the set on the way."""
        ids = sorted(self.redis.smembers(ACTIVE_JOBS))
        states = [self.redis.hget(self._key(job_id), "state") for job_id in ids]
        ended = [job_id for job_id, state in zip(ids, states, strict=True) if state is None or state in TERMINAL]
        if ended:
            self.redis.srem(ACTIVE_JOBS, *ended)
        return [job_id for job_id in ids if job_id not in ended]

    def sent(self, job_id: str) -> tuple[dict[str, str], dict[str, float]]:
        """(the job's sent and unfinished messages by name, when each was first seen missing)."""
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._key(job_id, ":sent"))
            pipe.hgetall(self._key(job_id, ":missing"))
            sent, missing = pipe.execute()
        return sent, {name: float(since) for name, since in missing.items()}

    def running(self, job_id: str, name: str, owner: str) -> None:
        """Note that worker ``owner`` has started message ``name`` (it holds it unacknowledged):
        if the worker dies, the redelivery sweep need not wait out the visibility timeout."""
        key = self._key(job_id, ":running")
        with self.redis.pipeline() as pipe:
            pipe.hset(key, name, owner)
            pipe.expire(key, JOB_MAX_AGE_SECONDS)
            pipe.execute()

    def runners(self, job_id: str) -> dict[str, str]:
        """Message name -> the worker that last started it (finished ones may linger)."""
        return self.redis.hgetall(self._key(job_id, ":running"))

    def seen_missing(self, job_id: str, name: str, since: float | None) -> None:
        """Note when message ``name`` was first seen missing (None: it has been seen again)."""
        key = self._key(job_id, ":missing")
        if since is None:
            self.redis.hdel(key, name)
        elif self.redis.hsetnx(key, name, since):
            self.redis.expire(key, JOB_MAX_AGE_SECONDS)

    def _batch_keys(self, job_id: str, batch_no: int) -> list[str]:
        j = self._key(job_id)
        return [j, f"{j}:b:{batch_no}", f"{j}:batches", f"{j}:attempts"]

    def begin(self, job_id: str, batch_no: int, index: int) -> int:
        """Mark a key started: the number of starts, or -1 if the key already has an outcome (or
        the job has ended), -2 if the batch is not one the job sent."""
        return int(self._begin(keys=self._batch_keys(job_id, batch_no),
                               args=[batch_no, index, time.time(), JOB_MAX_AGE_SECONDS]))

    def record(self, job_id: str, batch_no: int, index: int, key: str, outcome: str,
               reason: str = "", error: str = "", warning: str = "") -> bool:
        """Record a key's outcome (and what its output gave up); True if it was the first."""
        failure = json.dumps({"reason": reason, "error": error}) if outcome == "failed" else ""
        keys = [*self._batch_keys(job_id, batch_no), self._key(job_id, ":failed"),
                self._key(job_id, ":warnings")]
        return bool(self._record(keys=keys, args=[batch_no, index, COUNTER_OF[outcome], key, failure,
                                                  warning, WARNINGS_KEPT, JOB_MAX_AGE_SECONDS]))

    def open_batch(self, job_id: str, batch_no: int) -> int:
        """-2: not a batch the job sent (or no such job); -1: nothing left to do; 0: open."""
        return int(self._open(keys=self._batch_keys(job_id, batch_no), args=[batch_no]))

    def finish_batch(self, job_id: str, batch_no: int, seconds: float = 0.0, restored_bytes: int = 0) -> bool:
        """Close a batch; ``seconds`` it took to restore ``restored_bytes`` feed the job's cost
        measurement (:mod:`worker.sizing`). False if it was closed already (or never sent)."""
        keys = [*self._keys(job_id), self._key(job_id, f":b:{batch_no}")]
        return bool(self._finish_batch(keys=keys, args=[batch_no, time.time(), JOB_TTL_SECONDS,
                                                        JOB_MAX_AGE_SECONDS, seconds, restored_bytes]))

    def cost(self, job_id: str) -> tuple[float, int]:
        """(seconds, bytes) the job's finished batches took and restored, summed."""
        seconds, restored = self.redis.hmget(self._key(job_id), "cost_seconds", "cost_bytes")
        return float(seconds or 0), int(restored or 0)

    def list_rate(self, job_id: str) -> float | None:
        """Seconds per byte the current listing chunk sizes its batches by (None: the first
        chunk, which uses the prior). Fixed when the chunk was queued, so a chunk run twice
        cuts the same batches."""
        rate = self.redis.hget(self._key(job_id), "list_rate")
        return float(rate) if rate else None

    def status(self, job_id: str, failed_limit: int = 1000) -> JobStatus:
        """A snapshot; at most ``failed_limit`` failed keys are included (a job may fail millions)."""
        h = self.redis.hgetall(self._key(job_id))
        if not h:
            raise KeyError(job_id)
        failed_keys: dict[str, dict[str, str]] = {}
        if failed_limit and int(h.get("failed", 0)):
            for key, value in self.redis.hscan_iter(self._key(job_id, ":failed"), count=500):
                failed_keys[key] = json.loads(value)
                if len(failed_keys) >= failed_limit:
                    break

        warnings: dict[str, str] = {}
        if failed_limit and int(h.get("warned", 0)):
            for key, value in self.redis.hscan_iter(self._key(job_id, ":warnings"), count=500):
                warnings[key] = value
                if len(warnings) >= failed_limit:
                    break

        def number(name: str) -> float | None:
            return float(h[name]) if h.get(name) else None

        return JobStatus(
            id=job_id, state=h["state"], spec=JobSpec(**json.loads(h["spec"])),
            total=int(h.get("total", 0)), done=int(h.get("done", 0)),
            passed_through=int(h.get("passed_through", 0)), skipped=int(h.get("skipped", 0)), failed=int(h.get("failed", 0)),
            created=float(h["created"]), started=number("started"), finished=number("finished"),
            error=h.get("error"), failed_keys=failed_keys,
            warned=int(h.get("warned", 0)), warnings=warnings, options=json.loads(h.get("options") or "{}"),
        )

    def recent(self, limit: int = 100, finished_within: float = 3600.0) -> list[JobStatus]:
        """Jobs worth exporting as metrics: unfinished ones and those finished in the last hour."""
        now = time.time()
        jobs = []
        for job_id in self.redis.zrevrange(JOBS_INDEX, 0, limit - 1):
            try:
                job = self.status(job_id, failed_limit=0)
            except KeyError:  # expired
                self.redis.zrem(JOBS_INDEX, job_id)
                continue
            if job.state not in TERMINAL or now - (job.finished or now) <= finished_within:
                jobs.append(job)
        return jobs
