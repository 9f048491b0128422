"""Where bertflow meets the disk, and every trust check that goes with it:
reading a user's raw files (``raw``), writing outputs that are bertflow's own
(``outputs``: one writer per OUTPUT, ``--force`` replaces only what bertflow
writes) and loading saved pipelines without running code (``loading``)."""
