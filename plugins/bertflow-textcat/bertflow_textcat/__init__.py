"""bertflow-textcat: a text classification head on bertflow's shared encoder."""
__version__ = "0.1.0"
