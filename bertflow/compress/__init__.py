"""Smaller and faster pipelines: ``bertflow distill`` (``distill``, with its
student (``student``) and losses), augmentation for distillation (``augment``),
reduced-precision packaging behind a dev-set guard (``guard``) and
``bertflow export-encoder`` (``export``)."""
