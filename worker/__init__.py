"""Bucket-scale restoration: Celery workers, object storage, job tracking, metrics."""
