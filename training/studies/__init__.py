"""Studies: the measurements behind the docs, each run as ``python -m training.studies.<name>``.

They evaluate bundled models (or train short comparison runs) and print or write the tables and
figures of docs/*.md, and the measured policies the library ships (``arcnn/auto_policy*.json``,
``WEBP_POLICY``). Nothing in the product imports them: making models lives one level up
(``training/``: data, degradations, training, transfer, platform profiles, ``arcnn train``).
"""
