"""Building blocks of the worker, each against the real thing (a real Redis for the job store)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from arcnn.jobs.spec import JobSpec
from worker.jobs import JobStore
from arcnn.jobs.locations import (
    LocationError, UnsafeKeyError, check_disjoint, is_selected, output_key, parse_location,
)
from worker.metrics import JobCollector, QueueCollector
from worker.settings import WorkerSettings
from arcnn.jobs.storage import LocalStorage, TransientStorageError, retrying
from worker_support import redis_server  # noqa: F401 (fixture)


def test_parse_locations() -> None:
    s3 = parse_location("s3://bucket/some/prefix")
    assert (s3.scheme, s3.bucket, s3.prefix) == ("s3", "bucket", "some/prefix/")
    assert parse_location("s3://bucket").prefix == ""
    assert parse_location("file:///tmp/x").bucket == "/tmp/x"
    assert parse_location("relative/dir").bucket == str(Path("relative/dir").resolve())
    for bad in ("s3:///nobucket", "http://example.com/x", "file://host/x"):
        with pytest.raises(LocationError):
            parse_location(bad)


def test_output_keys_mirror_and_refuse_escapes() -> None:
    dest = parse_location("s3://out/restored")
    assert output_key(dest, "a/b/photo.JPG", "a/b/photo.png") == "restored/a/b/photo.png"
    assert output_key(dest, "noext", "noext.webp") == "restored/noext.webp"
    for unsafe in ("../x.jpg", "a/../../x.jpg", "/etc/x.jpg", "a//x.jpg", "./x.jpg", "a\\..\\x.jpg",
                   "a/\x00.jpg", ""):
        with pytest.raises(UnsafeKeyError):
            output_key(dest, unsafe, "x.png")
    for name in ("a/..", "b/x.png", "x.png", "a/"):  # a name from a message must sit beside its key
        with pytest.raises(UnsafeKeyError):
            output_key(dest, "a/x.jpg", name)


def test_overlap_is_refused_both_ways_but_siblings_are_fine(tmp_path: Path) -> None:
    with pytest.raises(LocationError):
        check_disjoint(parse_location("s3://b/in"), parse_location("s3://b/in/out"))
    with pytest.raises(LocationError):
        check_disjoint(parse_location("s3://b/in/sub"), parse_location("s3://b/in"))
    with pytest.raises(LocationError):
        check_disjoint(parse_location(str(tmp_path)), parse_location(f"file://{tmp_path}/out"))
    check_disjoint(parse_location("s3://b/in"), parse_location("s3://b/in-restored"))
    check_disjoint(parse_location("s3://b/in"), parse_location("s3://other/in"))
    check_disjoint(parse_location(f"{tmp_path}/in"), parse_location(f"{tmp_path}/in2"))


def test_selection_defaults_to_images_and_honours_include() -> None:
    assert is_selected("a/b.JPG", None) and is_selected("x.webp", None)
    assert not is_selected("notes.txt", None) and not is_selected("folder/", None)
    assert is_selected("raw/x.dat", "raw/*") and not is_selected("a/b.jpg", "raw/*")


def test_local_listing_is_s3_ordered_and_resumable(tmp_path: Path) -> None:
    names = ["a-b.jpg", "a/b.jpg", "a/c/d.jpg", "a0.jpg", "b.jpg", ".arcnn-meta/x.json"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    storage = LocalStorage(parse_location(str(tmp_path)))
    keys = [obj.key for obj in storage.list()]
    assert keys == sorted(n for n in names if not n.startswith(".arcnn-meta"))  # byte order, like S3
    assert [obj.key for obj in storage.list(start_after="a/b.jpg")] == ["a/c/d.jpg", "a0.jpg", "b.jpg"]


def test_retrying_retries_transient_errors_only_up_to_the_limit() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise TransientStorageError("503")
        return "ok"

    assert retrying(flaky, retries=3, backoff=0.01) == "ok" and len(calls) == 3
    attempts = []

    def down() -> None:
        attempts.append(1)
        raise TransientStorageError("503")

    with pytest.raises(TransientStorageError):
        retrying(down, retries=2, backoff=0.01)
    assert len(attempts) == 3  # first try + 2 retries


def test_settings_add_worker_fields_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCNN_RETRY_BACKOFF", "0.25")
    monkeypatch.setenv("ARCNN_VISIBILITY_TIMEOUT", "7")
    settings = WorkerSettings.from_env(os.environ)
    assert settings.retry_backoff == 0.25 and settings.visibility_timeout == 7


def test_job_counts_are_exact_under_redelivery(redis_server) -> None:  # noqa: F811
    """A batch processed twice (worker lost after some records) counts each key once."""
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    assert store.batch_sent(job, 0, 3, "k2", "[]") and not store.batch_sent(job, 0, 3, "k2", "[]")  # resent
    assert store.batch_sent(job, 1, 1, "k3", "[]")
    store.listing_done(job, 0)
    # first delivery: two keys recorded, then the worker dies
    assert store.begin(job, 0, 0) == 1 and store.record(job, 0, 0, "k0", "restored")
    assert store.begin(job, 0, 1) == 1 and store.record(job, 0, 1, "k1", "failed", "bad_image", "x")
    assert store.begin(job, 0, 2) == 1
    # redelivery: settled keys are refused, the unfinished one is on its second start
    assert store.begin(job, 0, 0) == -1 and not store.record(job, 0, 0, "k0", "skipped")
    assert store.begin(job, 0, 2) == 2 and store.record(job, 0, 2, "k2", "restored")
    assert store.finish_batch(job, 0) and not store.finish_batch(job, 0)
    assert store.status(job).state == "running"
    assert store.begin(job, 1, 0) == 1 and store.record(job, 1, 0, "k3", "skipped")
    assert store.finish_batch(job, 1)
    status = store.status(job)
    assert (status.state, status.total, status.done, status.skipped, status.failed) == ("done", 4, 2, 1, 1)
    assert status.failed_keys == {"k1": {"reason": "bad_image", "error": "x"}}
    assert store.begin(job, 0, 1) == -1  # a finished batch is one bit: everything in it is settled
    assert not store.redis.exists(f"arcnn:job:{job}:b:0")  # per-key state freed with the batch
    assert store.redis.ttl(f"arcnn:job:{job}") > 0  # finished jobs expire


def test_empty_job_is_done_when_listing_ends(redis_server) -> None:  # noqa: F811
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    store.listing_done(job, 0)
    assert store.status(job).state == "done" and store.status(job).progress == 1.0
    # it says why nothing happened, in `arcnn status` and in the JSON job report
    from worker.commands import _describe

    assert "no keys matched: s3://b/in" in _describe(store.status(job))
    assert store.status(job).as_dict()["note"].startswith("no keys matched")


def test_run_on_an_empty_folder_says_no_keys_matched(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from arcnn.cli import main

    (tmp_path / "in").mkdir()
    result = CliRunner().invoke(main, ["run", str(tmp_path / "in"), "--dest", str(tmp_path / "out")])
    assert result.exit_code == 0 and "total 0" in result.output and "no keys matched" in result.output


def test_local_outputs_are_atomic_with_metadata(tmp_path: Path) -> None:
    storage = LocalStorage(parse_location(str(tmp_path)))
    storage.put("a/b.png", b"png", "png", {"arcnn-source-etag": "e1"})
    assert (tmp_path / "a/b.png").read_bytes() == b"png"
    assert storage.metadata("a/b.png") == {"arcnn-source-etag": "e1"}
    assert storage.metadata("a/missing.png") is None
    assert not [p for p in tmp_path.rglob("*.part")]
    assert sorted(os.listdir(tmp_path)) == [".arcnn-meta", "a"]


def test_local_outputs_follow_the_umask(tmp_path: Path) -> None:
    """Outputs and their metadata get the mode ``open()`` would give them (mkstemp's is 0600)."""
    import stat

    from arcnn.jobs import storage as module

    LocalStorage(parse_location(str(tmp_path))).put("a/b.png", b"png", "png", {})
    expected = 0o666 & ~module._read_umask()
    assert stat.S_IMODE((tmp_path / "a/b.png").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / ".arcnn-meta/a/b.png.json").stat().st_mode) == expected


def test_a_file_name_too_long_is_a_permanent_error(tmp_path: Path) -> None:
    """No retry can shorten a name: it fails its key at once instead of ~10 s of backoff."""
    from arcnn.jobs.storage import PermanentStorageError

    with pytest.raises(PermanentStorageError, match="too long"):
        LocalStorage(parse_location(str(tmp_path))).put("x" * 300 + ".png", b"png", "png", {})


def test_queue_depth_and_job_progress_are_read_from_redis(redis_server) -> None:  # noqa: F811
    client = redis_server.client()
    client.delete("depth-test")
    client.rpush("depth-test", "a", "b", "c")
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    store.batch_sent(job, 0, 4, "k3", "[]")
    store.begin(job, 0, 0)
    store.record(job, 0, 0, "k0", "restored")
    families = {f.name: f for f in [*QueueCollector(client, ["depth-test"]).collect(),
                                    *JobCollector(store).collect()]}
    assert [s.value for s in families["arcnn_queue_depth"].samples] == [3]
    progress = {s.labels["job_id"]: s.value for s in families["arcnn_job_progress_ratio"].samples}
    assert progress[job] == 0.25
    images = {(s.labels["job_id"], s.labels["state"]): s.value for s in families["arcnn_job_images"].samples}
    assert images[(job, "total")] == 4 and images[(job, "done")] == 1


def test_inference_threads_share_tile_batches_with_identical_results() -> None:
    """Two threads restoring different images at once: their tiles meet in shared forward
    passes (fewer passes than tiles batches), and every output equals a lone restore."""
    import threading

    import numpy as np
    from PIL import Image

    from arcnn.restoration import Restorer
    from arcnn.jobs.batching import BatchingRestorer

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)) for _ in range(8)]
    alone = Restorer.load("random:9-7-1-5", device="cpu", tile=16, batch_size=2)
    expected = [np.asarray(alone.restore(img)) for img in images]
    shared = BatchingRestorer("random:9-7-1-5", device="cpu", tile=16, batch_size=2, max_batch=4)
    shared.model("random:9-7-1-5").window = 0.05  # make the threads meet reliably on a busy CPU
    results: dict[int, np.ndarray] = {}

    def work(indices: range) -> None:
        for i in indices:
            results[i] = np.asarray(shared.restore(images[i], model="random:9-7-1-5"))

    threads = [threading.Thread(target=work, args=(range(k, 8, 2),)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        assert np.array_equal(results[i], expected[i])
    batches_alone = 8 * 5  # 40x48 in 16px tiles: 6 of 16x16 + 3 of 8x16 -> 5 batches of <= 2
    assert shared.model("random:9-7-1-5").forward_passes < batches_alone


def test_a_second_worker_on_a_taken_metrics_port_fails_in_one_line(redis_server, tmp_path: Path) -> None:  # noqa: F811
    """Two workers on one host with the default port: the second says which setting to change
    (one line, exit 1) instead of dying with a traceback."""
    import socket

    from worker_support import base_env, cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = base_env(redis_server.url, "http://127.0.0.1:1", ARCNN_METRICS_PORT=str(port))
        result = cli(env, "worker", "--device", "cpu", check=False, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0] and "ARCNN_METRICS_PORT" in errors[0]


def test_metrics_bind_loopback_unless_told() -> None:
    assert WorkerSettings().metrics_addr == "127.0.0.1"


def test_one_shot_commands_fail_fast_in_one_line_when_the_broker_is_down(tmp_path: Path) -> None:
    """enqueue / status with Redis unreachable: exit 1 within 15 s, one line naming the broker
    URL with its password masked (they hung 60-90 s and printed a 60-line traceback)."""
    from worker_support import base_env, cli, free_port

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    env = base_env(url, "http://127.0.0.1:1")
    (tmp_path / "in").mkdir()
    for args in (("status", "some-job"), ("enqueue", str(tmp_path / "in"), "--dest", str(tmp_path / "out"))):
        start = time.monotonic()
        result = cli(env, *args, check=False, timeout=60)
        assert time.monotonic() - start < 15, args
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "redis://:***@127.0.0.1" in errors[0] and "hunter2" not in result.stderr


def _stem_group_job(tmp_path: Path, redis_server):  # noqa: ANN001, ANN202
    """A passthrough job over 8 local keys with a stem group (b.jpg, b.png), listed 3 keys a
    message, on a worker runtime of this test's Redis with an empty queue: (src, dest, keys,
    runtime, client, spec, job_id)."""
    from worker import tasks
    from worker.app import QUEUE, app, configure
    from worker.engine import worker_pipeline

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    keys = [f"a{i}.jpg" for i in range(5)] + ["b.jpg", "b.png", "c.jpg"]
    for key in keys:
        (src / key).write_bytes(b"x")
    settings = WorkerSettings(broker_url=redis_server.url, list_batch=3, device="cpu")
    configure(settings)
    app._after_fork()  # drop connections pooled for another test module's broker
    runtime = tasks.Runtime(settings, worker_pipeline(settings))
    client = redis_server.client()
    client.delete(QUEUE)
    spec = JobSpec(str(src), str(dest), model="passthrough")
    return src, dest, keys, runtime, client, spec, runtime.store.create(spec)


def test_listing_chunks_cut_between_naming_groups(tmp_path: Path, redis_server, monkeypatch) -> None:  # noqa: F811
    """The Celery lister stops every few batches and queues a continuation; a stem group split
    by that cut would be named differently by the continuation than by one whole listing."""
    import base64
    import json

    from arcnn.jobs.listing import planned
    from arcnn.jobs.locations import parse_location
    from worker import tasks
    from worker.app import QUEUE

    monkeypatch.setattr(tasks, "LIST_CHUNK", 2)
    src, dest, keys, runtime, client, spec, job_id = _stem_group_job(tmp_path, redis_server)
    from_batch = 0
    for _ in range(10):
        runtime.list_chunk(job_id, from_batch)
        listed, from_batch = runtime.store.listing_position(job_id)
        if listed:
            break
    items = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):  # LPUSHed: oldest last
        message = json.loads(raw)
        if message["headers"]["task"] == "arcnn.restore_batch":
            items += json.loads(base64.b64decode(message["body"]))[0][2]
    client.delete(QUEUE)
    source = LocalStorage(parse_location(str(src)))
    whole = {n.item.key: n.name for g in planned(source, LocalStorage(parse_location(str(dest))), spec) for n in g}
    assert [item[0] for item in items] == keys  # each key once, in order
    assert {item[0]: item[2] for item in items} == whole
    assert whole["b.png"] == "b.png.png" and whole["a4.jpg"] == "a4.png"


def test_a_restarted_listing_names_every_key_as_a_whole_listing_would(tmp_path: Path, redis_server, monkeypatch) -> None:  # noqa: F811
    """A listing chunk that dies after sending some batches is run again from the last key sent.
    With batches cut by count, that key could sit inside a stem group (b.jpg, b.png), and the
    rerun named b.png alone ("b.png", not "b.png.png"). Messages now hold whole groups."""
    import base64
    import json

    from arcnn.jobs.listing import planned
    from arcnn.jobs.locations import parse_location
    from worker.app import QUEUE

    src, dest, keys, runtime, client, spec, job_id = _stem_group_job(tmp_path, redis_server)
    send = runtime._send
    calls = []

    def dying_send(*args: object) -> None:  # the worker is killed after its second message
        if len(calls) == 2:
            raise SystemExit("killed")
        calls.append(args)
        send(*args)

    monkeypatch.setattr(runtime, "_send", dying_send)
    with pytest.raises(SystemExit):
        runtime.list_chunk(job_id, 0)
    monkeypatch.setattr(runtime, "_send", send)
    runtime.list_chunk(job_id, 0)  # the same chunk, redelivered
    assert runtime.store.listing_position(job_id)[0]
    items = []
    for raw in reversed(client.lrange(QUEUE, 0, -1)):
        message = json.loads(raw)
        if message["headers"]["task"] == "arcnn.restore_batch":
            items += json.loads(base64.b64decode(message["body"]))[0][2]
    client.delete(QUEUE)
    source = LocalStorage(parse_location(str(src)))
    whole = {n.item.key: n.name for g in planned(source, LocalStorage(parse_location(str(dest))), spec) for n in g}
    assert [item[0] for item in items] == keys  # each key once, in order
    assert {item[0]: item[2] for item in items} == whole and whole["b.png"] == "b.png.png"


def test_nothing_a_job_leaves_in_redis_lives_forever(redis_server) -> None:  # noqa: F811
    from worker.jobs import JOB_MAX_AGE_SECONDS, JOB_TTL_SECONDS, JOBS_INDEX

    client = redis_server.client()
    client.zadd(JOBS_INDEX, {"ancient": time.time() - JOB_MAX_AGE_SECONDS - 60})
    store = JobStore.from_url(redis_server.url)
    job_id = store.create(JobSpec("s3://b/in", "s3://b/out"))
    assert client.zscore(JOBS_INDEX, "ancient") is None  # trimmed when a job is created
    store.batch_sent(job_id, 0, 2, "in/b.jpg", "[]")
    store.batch_sent(job_id, 1, 1, "in/c.jpg", "[]")
    store.begin(job_id, 0, 0)
    store.record(job_id, 0, 0, "in/a.jpg", "failed", "bad_image", "corrupt")
    store.begin(job_id, 0, 1)
    store.record(job_id, 0, 1, "in/b.jpg", "restored", warning="alpha dropped")
    store.finish_batch(job_id, 0)
    store.begin(job_id, 1, 0)  # batch 1 never finishes: its worker and the message were lost

    def ttls() -> dict[str, int]:
        keys = [*client.scan_iter(f"arcnn:job:{job_id}*"), JOBS_INDEX]
        return {key: client.ttl(key) for key in keys}

    stalled = ttls()
    assert f"arcnn:job:{job_id}:attempts" in stalled and JOBS_INDEX in stalled
    assert all(0 < ttl <= JOB_MAX_AGE_SECONDS for ttl in stalled.values()), stalled
    store.record(job_id, 1, 0, "in/c.jpg", "skipped")
    store.finish_batch(job_id, 1)
    store.listing_done(job_id, 0)
    assert store.status(job_id).state == "done"
    done = ttls()
    assert all(0 < ttl <= JOB_TTL_SECONDS for key, ttl in done.items() if key != JOBS_INDEX), done


def test_the_sweep_sends_again_only_what_is_nowhere_for_the_whole_delay(redis_server) -> None:  # noqa: F811
    """A recorded message is sent again when neither the queue nor ``unacked`` has held it for
    ``redeliver_after`` seconds; one that is queued, unacknowledged or finished is left alone."""
    import json

    from worker.jobs import ACTIVE_JOBS, message
    from worker.redelivery import sweep, task_id

    client = redis_server.client()
    client.delete("sweep-q", "unacked", ACTIVE_JOBS)  # other tests' jobs are not this one's business
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    for n in range(4):
        assert store.batch_sent(job, n, 1, f"k{n}", message("arcnn.restore_batch", [job, n, [[f"k{n}", "e"]]]))
    store.finish_batch(job, 3)

    def envelope(name: str) -> str:
        return json.dumps({"body": "", "headers": {"id": task_id(job, name), "task": "t"}, "properties": {}})

    client.lpush("sweep-q", envelope("l0"), envelope("b0"), "not json {")  # queued
    client.hset("unacked", "tag", json.dumps([json.loads(envelope("b1")), "", "sweep-q"]))  # being run
    sent: list[tuple[str, list, str]] = []

    def send(task: str, args: list, tid: str) -> None:
        sent.append((task, args, tid))

    assert sweep(store, "sweep-q", send, redeliver_after=30, now=1000.0) == 0  # b2 first seen missing
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=1029.0) == 0  # not yet for 30 s
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=1030.0) == 1
    [(task, args, tid)] = sent
    assert (task, args) == ("arcnn.restore_batch", [job, 2, [["k2", "e"]]]) and tid.startswith(f"arcnn-{job}-b2-")
    # once queued again it is present, and a message seen again is no longer counted as missing
    client.lpush("sweep-q", envelope("b2"))
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=2000.0) == 0
    assert store.sent(job)[1] == {}
    client.delete("sweep-q", "unacked")
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=3000.0) == 0  # missing again: restart the clock
    assert set(store.sent(job)[1]) == {"l0", "b0", "b1", "b2"}
    # held unacknowledged by a worker that started it: left alone while its heartbeat lives,
    # sent again once the worker has died
    from worker.redelivery import beat

    client.hset("unacked", "tag", json.dumps([json.loads(envelope("b1")), "", "sweep-q"]))
    client.lpush("sweep-q", envelope("l0"), envelope("b0"), envelope("b2"))
    store.running(job, "b1", "host:42")
    beat(client, "host:42", 60)
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=4000.0) == 0
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=4100.0) == 0
    client.delete("arcnn:worker:host:42")  # SIGKILLed: its heartbeat lapses
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=5000.0) == 0
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=5030.0) == 1
    assert sent[-1][1][:2] == [job, 1]
    store.cancel(job)
    assert sweep(store, "sweep-q", send, redeliver_after=30, now=9000.0) == 0  # an ended job is left alone
    assert len(sent) == 2


def test_only_batches_a_job_sent_are_accepted(redis_server) -> None:  # noqa: F811
    """Poison batch numbers and messages naming ended or unknown jobs change nothing: no count,
    no key created (a job key without expiry), no 512 MiB bitmap for batch 2**32-1."""
    client = redis_server.client()
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    assert store.batch_sent(job, 0, 1, "k0", "[]")
    for batch_no in (-1, 1, 2**32 - 1, 2**40):
        assert store.open_batch(job, batch_no) == -2
        assert store.begin(job, batch_no, 0) == -2
        assert not store.record(job, batch_no, 0, "k", "restored")
        assert not store.finish_batch(job, batch_no)
    assert (client.strlen(f"arcnn:job:{job}:batches") or 0) < 8
    assert store.begin(job, 0, 0) == 1 and store.record(job, 0, 0, "k0", "restored")
    assert store.finish_batch(job, 0)
    store.listing_done(job, 0)
    assert store.status(job).state == "done"
    # a finished job is immutable: its batch is settled and nothing is counted again
    assert store.open_batch(job, 0) == -1 and store.begin(job, 0, 0) == -1
    assert not store.record(job, 0, 0, "k0", "failed", "bad_image", "x")
    status = store.status(job)
    assert (status.total, status.done, status.failed) == (1, 1, 0)
    # a job that does not exist (Redis restarted without persistence) is not recreated
    assert store.begin("0123456789ab", 0, 0) == -2
    assert not store.record("0123456789ab", 0, 0, "k", "restored")
    assert not store.finish_batch("0123456789ab", 0)
    assert not client.keys("arcnn:job:0123456789ab*")


def test_a_worker_that_celery_stops_with_an_error_exits_non_zero(redis_server, monkeypatch) -> None:  # noqa: F811
    """Celery returns 1 after "Unrecoverable error"; `arcnn worker` used to drop it and exit 0,
    so `restart: on-failure` never brought the worker back."""
    from click.testing import CliRunner

    from worker import commands
    from worker.app import app

    monkeypatch.setattr(app, "start", lambda argv=None: 1)
    result = CliRunner().invoke(commands.worker, ["--device", "cpu", "--metrics-port", "0"],
                                env={"ARCNN_BROKER_URL": redis_server.url})
    assert result.exit_code == 1, result.output


def test_broker_urls_are_checked_and_printed_without_their_password(tmp_path: Path) -> None:
    from worker.commands import masked

    assert masked("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert masked("redis://h:6379/0?password=s3cret&db=1") == "redis://h:6379/0?password=***&db=1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCNN_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    arcnn = str(Path(sys.executable).with_name("arcnn"))
    for url, expected in (("redis://127.0.0.1:9/0?password=s3cret", "password=***"),
                          ("http://127.0.0.1:9/0", "must be a redis:// or rediss:// URL")):
        result = subprocess.run([arcnn, "status", "abc"], env={**env, "ARCNN_BROKER_URL": url},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1 and expected in result.stderr, result.stderr
        assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_batches_are_cut_by_estimated_seconds_not_a_fixed_count() -> None:
    from worker.sizing import MEASURED_AFTER_BYTES, PRIOR_SECONDS_PER_BYTE, BatchCutter, seconds_per_byte

    assert seconds_per_byte(5.0, MEASURED_AFTER_BYTES - 1) == PRIOR_SECONDS_PER_BYTE  # too little measured
    assert seconds_per_byte(120.0, 2 * MEASURED_AFTER_BYTES) == 60.0 / MEASURED_AFTER_BYTES

    def cut(sizes: list[int], target: float, max_keys: int, rate: float) -> list[list[int]]:
        cutter, batches, batch = BatchCutter(target, max_keys, rate), [], []
        for size in sizes:
            if cutter.overflows(size):
                batches, batch = [*batches, batch], []
                cutter.reset()
            batch.append(size)
            if cutter.add(size):
                batches, batch = [*batches, batch], []
        return batches + ([batch] if batch else [])

    # 1 s per MB, 60 s per message: small keys fill up to the count, large ones by time
    assert cut([10_000] * 7, 60, 3, 1e-6) == [[10_000] * 3, [10_000] * 3, [10_000]]
    assert cut([25_000_000] * 5, 60, 100, 1e-6) == [[25_000_000] * 2, [25_000_000] * 2, [25_000_000]]
    # a key costlier than the target travels alone, and does not drag its neighbours along
    assert cut([1000, 500_000_000, 1000], 60, 100, 1e-6) == [[1000], [500_000_000], [1000]]


def test_the_lister_sizes_messages_by_cost_and_learns_the_jobs_rate(tmp_path: Path, redis_server, monkeypatch) -> None:  # noqa: F811
    """12 MP photos in a fixed 100-key message would run longer than the visibility timeout on
    a CPU worker. Here chunks of two messages: the first two chunks cut by the prior (20 s a
    key, 3 keys a minute); the workers then measure 5 s a key and the next chunk takes 6 at once."""
    import base64
    import json

    from worker import tasks
    from worker.app import QUEUE, app, configure
    from worker.engine import worker_pipeline

    src = tmp_path / "src"
    src.mkdir()
    for i in range(18):
        (src / f"{i:02d}.jpg").write_bytes(b"x" * 500_000)  # 20 s each at the prior (4e-5 s/B)
    settings = WorkerSettings(broker_url=redis_server.url, list_batch=100, batch_seconds=60, device="cpu")
    configure(settings)
    app._after_fork()
    monkeypatch.setattr(tasks, "LIST_CHUNK", 2)
    runtime = tasks.Runtime(settings, worker_pipeline(settings))
    client = redis_server.client()

    def queued() -> list[int]:
        sizes = []
        for raw in reversed(client.lrange(QUEUE, 0, -1)):
            body = json.loads(raw)
            if body["headers"]["task"] == "arcnn.restore_batch":
                sizes.append(len(json.loads(base64.b64decode(body["body"]))[0][2]))
        client.delete(QUEUE)
        return sizes

    client.delete(QUEUE)
    job_id = runtime.store.create(JobSpec(str(src), str(tmp_path / "out"), model="passthrough"))
    runtime.list_chunk(job_id, 0)
    assert queued() == [3, 3]
    for batch_no in (0, 1):  # the workers restore them at 5 s a key
        assert runtime.store.finish_batch(job_id, batch_no, seconds=15.0, restored_bytes=1_500_000)
    runtime.list_chunk(job_id, 2)  # queued before the measurement: sized by the prior
    assert queued() == [3, 3]
    runtime.list_chunk(job_id, 4)
    assert queued() == [6]
    assert runtime.store.listing_position(job_id)[0]


def test_status_watch_shows_the_jobs_own_rate(redis_server) -> None:  # noqa: F811
    """tqdm saw 1000 keys appear at once when the watch began and printed rates like 50533 img/s."""
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    assert store.batch_sent(job, 0, 1000, "k999", "[]")
    for i in range(1000):
        store.begin(job, 0, i)
        store.record(job, 0, i, f"k{i}", "restored")
    store.redis.hset(f"arcnn:job:{job}", "started", time.time() - 100)  # its first key began 100 s ago
    store.finish_batch(job, 0)
    store.listing_done(job, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCNN_", "AWS_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    result = subprocess.run([str(Path(sys.executable).with_name("arcnn")), "status", job, "--watch"],
                            env={**env, "ARCNN_BROKER_URL": redis_server.url}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "10.0 img/s" in result.stderr and "1000/1000" in result.stderr, result.stderr
    assert "img/s," in result.stderr and "it/s" not in result.stderr
