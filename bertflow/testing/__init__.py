"""Test helpers: a tiny randomly initialised BERT (``tiny``, no pytest needed) and
the pytest fixtures of the ``bertflow`` pytest plugin (``fixtures``)."""
