"""Training data: the ``.spacy`` corpus readers and batchers (``corpus``), raw
text straight into training (``text_corpus``) and ``bertflow convert``
(``convert``: raw data to DocBins through each task's converter)."""
