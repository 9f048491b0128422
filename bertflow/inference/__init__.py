"""Running trained pipelines: ``bertflow annotate`` (``annotate``), the engines
behind it (``engines``: local; ``ray_engine``: Ray) and ``bertflow check``
(``check``: odd text and round-trips against any pipeline)."""
