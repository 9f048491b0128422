"""Training: configs for any set of heads (``config``), the optimizer and its
schedule (``optimizer``), ``bertflow train`` on one or many processes
(``distributed``), the learning-rate sweep (``sweep``) and scoring on ``.spacy``
data (``evaluation``)."""
