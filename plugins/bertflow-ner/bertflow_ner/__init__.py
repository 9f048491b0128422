"""bertflow-ner: a token-classification NER head on bertflow's shared encoder."""
__version__ = "0.1.0"
