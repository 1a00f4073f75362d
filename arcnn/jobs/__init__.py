"""The job engine: restore every selected image of a folder or bucket into another.

``arcnn restore``, ``arcnn run`` and the Celery workers are drivers of this one engine, so the
same input tree is selected, named, guarded, skipped and reported the same way whichever
command restored it:

- :mod:`arcnn.jobs.spec`: what a job is (:class:`~arcnn.jobs.spec.JobSpec`) and what can happen
  to one key (:data:`~arcnn.jobs.spec.OUTCOMES`);
- :mod:`arcnn.jobs.locations`: ``s3://bucket/prefix`` and local folders, the overlap guard,
  ``--include`` globs and safe output keys;
- :mod:`arcnn.jobs.storage`: the storage protocol, its errors and retries, and local folders
  (S3 is an adapter in ``worker.storage``);
- :mod:`arcnn.jobs.listing`: which keys a job takes, with their output names
  (:mod:`arcnn.naming`);
- :mod:`arcnn.jobs.output`: how an output is written (format, quality, passthrough copies,
  validation before it counts);
- :mod:`arcnn.jobs.pipeline`: the streaming pipeline, reporting to an observer;
- :mod:`arcnn.jobs.batching`: tiles of several images in one forward pass (GPUs);
- :mod:`arcnn.jobs.report`: the per-key lines and the final summary both commands print.
"""
