"""Job state in Redis: the spec, exact counters, failed keys, and the state machine.

States: ``listing`` (keys still streaming into the queue; batches may already be running),
``running`` (listing finished, batches outstanding), ``done`` (every listed key has an outcome),
``failed`` (the job itself could not proceed, e.g. the source does not exist; per-key failures
do not fail the job, they are counted and listed).

Counts stay exact although delivery is at-least-once (a killed worker's batch is redelivered and
partly redone): every key is identified by (batch number, index in batch), and each change is a
Lua script, so it is atomic and the first outcome recorded for a key is the only one counted.
Per-key bookkeeping lives only while its batch is open (a Redis set per in-flight batch); a
finished batch collapses to one bit, so memory does not grow with the size of the job.

Keys (``{j}`` is ``arcnn:job:<id>``): ``{j}`` hash (spec, state, counters), ``{j}:failed`` hash
(key -> JSON reason), ``{j}:warnings`` hash (key -> what its output gave up; the first
:data:`WARNINGS_KEPT`, all of them counted), ``{j}:batches`` bitmap (finished batches), ``{j}:b:<n>`` set (recorded
indices of open batch n), ``{j}:attempts`` hash (starts of unfinished keys, for poison detection);
``arcnn:jobs`` sorted set of job ids by creation time.

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
JOB_TTL_SECONDS = 7 * 24 * 3600
"""Finished jobs (and their failed-key lists) are kept this long, then Redis drops them."""
JOB_MAX_AGE_SECONDS = 30 * 24 * 3600
"""The longest any job's state is kept, finished or not (a job still running after this long
loses its state: no job should)."""

COUNTER_OF = {"restored": "done", "passed_through": "passed_through", "skipped": "skipped", "failed": "failed"}
"""Outcome of one key (:data:`arcnn.jobs.spec.OUTCOMES`) -> job counter (``done`` counts
images a model restored, ``passed_through`` those no model was applied to)."""

TERMINAL = ("done", "failed")

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
-- KEYS: job. ARGV: batch_no, n_keys, cursor. Count a sent batch once (listing may be redone).
if tonumber(redis.call('HGET', KEYS[1], 'batches_sent') or '0') ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HINCRBY', KEYS[1], 'batches_sent', 1)
redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
redis.call('HSET', KEYS[1], 'list_cursor', ARGV[3])
return 1
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
-- KEYS: job, failed, batches, attempts, warnings. ARGV: now, ttl.
redis.call('HSET', KEYS[1], 'listing_done', '1')
if redis.call('HGET', KEYS[1], 'state') == 'listing' then
  redis.call('HSET', KEYS[1], 'state', 'running')
end
maybe_done(KEYS[1], ARGV[1], ARGV[2], KEYS)
"""

_BEGIN = """
-- KEYS: job, batch set, batches bitmap, attempts. ARGV: batch_no, index, now, max age.
-- Returns -1 if the key already has an outcome, else how many times it has been started.
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then return -1 end
redis.call('HSETNX', KEYS[1], 'started', ARGV[3])
local starts = redis.call('HINCRBY', KEYS[4], ARGV[1] .. ':' .. ARGV[2], 1)
redis.call('EXPIRE', KEYS[4], ARGV[4])
return starts
"""

_RECORD = """
-- KEYS: job, batch set, batches bitmap, attempts, failed, warnings.
-- ARGV: batch_no, index, counter, key, failure JSON ('' unless failed), warning, warnings kept,
--       max age.
-- Returns 1 if this was the key's first outcome (and was counted), else 0.
if redis.call('GETBIT', KEYS[3], ARGV[1]) == 1 then return 0 end
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

_FINISH_BATCH = _MAYBE_DONE + """
-- KEYS: job, failed, batches, attempts, warnings, batch set. ARGV: batch_no, now, ttl, max age.
if redis.call('SETBIT', KEYS[3], ARGV[1], 1) == 1 then return 0 end
redis.call('EXPIRE', KEYS[3], ARGV[4])
redis.call('DEL', KEYS[6])
redis.call('HINCRBY', KEYS[1], 'batches_finished', 1)
maybe_done(KEYS[1], ARGV[2], ARGV[3], {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]})
return 1
"""


def connect(url: str) -> redis.Redis:
    """A Redis client that rides out a Redis restart: commands retry with backoff for ~1 minute."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.2), retries=20),
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

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(connect(url))

    @staticmethod
    def _key(job_id: str, suffix: str = "") -> str:
        return f"arcnn:job:{job_id}{suffix}"

    def _keys(self, job_id: str) -> list[str]:
        return [self._key(job_id, s) for s in ("", ":failed", ":batches", ":attempts", ":warnings")]

    def create(self, spec: JobSpec) -> str:
        job_id = uuid.uuid4().hex[:12]
        now = time.time()
        fields = {"spec": json.dumps(asdict(spec)), "state": "listing", "created": now,
                  "total": 0, "done": 0, "passed_through": 0, "skipped": 0, "failed": 0,
                  "batches_sent": 0, "batches_finished": 0, "list_cursor": ""}
        with self.redis.pipeline() as pipe:
            pipe.hset(self._key(job_id), mapping=fields)
            pipe.expire(self._key(job_id), JOB_MAX_AGE_SECONDS)
            pipe.zadd(JOBS_INDEX, {job_id: now})
            pipe.zremrangebyscore(JOBS_INDEX, "-inf", now - JOB_MAX_AGE_SECONDS)
            pipe.expire(JOBS_INDEX, JOB_MAX_AGE_SECONDS)
            pipe.execute()
        return job_id

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

    def continued(self, job_id: str, from_batch: int) -> None:
        """Note that a listing continuation starting at ``from_batch`` has been queued."""
        self.redis.hset(self._key(job_id), "list_next", from_batch)

    def batch_sent(self, job_id: str, batch_no: int, n_keys: int, last_key: str) -> bool:
        return bool(self._batch_sent(keys=[self._key(job_id)], args=[batch_no, n_keys, last_key]))

    def listing_done(self, job_id: str) -> None:
        self._listing_done(keys=self._keys(job_id), args=[time.time(), JOB_TTL_SECONDS])

    def fail(self, job_id: str, error: str) -> None:
        """The job as a whole failed (its source cannot be listed, its model does not exist)."""
        self.redis.hset(self._key(job_id), mapping={"state": "failed", "error": error,
                                                    "finished": time.time()})
        for key in self._keys(job_id):
            self.redis.expire(key, JOB_TTL_SECONDS)

    def _batch_keys(self, job_id: str, batch_no: int) -> list[str]:
        j = self._key(job_id)
        return [j, f"{j}:b:{batch_no}", f"{j}:batches", f"{j}:attempts"]

    def begin(self, job_id: str, batch_no: int, index: int) -> int:
        """Mark a key started: -1 if it already has an outcome, else the number of starts."""
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

    def finish_batch(self, job_id: str, batch_no: int) -> bool:
        keys = [*self._keys(job_id), self._key(job_id, f":b:{batch_no}")]
        return bool(self._finish_batch(keys=keys, args=[batch_no, time.time(), JOB_TTL_SECONDS,
                                                        JOB_MAX_AGE_SECONDS]))

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
            warned=int(h.get("warned", 0)), warnings=warnings,
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
