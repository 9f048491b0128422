"""bertflow-mlm: continued masked-LM (and next-sentence) pre-training of bertflow's shared encoder."""
__version__ = "0.1.0"
