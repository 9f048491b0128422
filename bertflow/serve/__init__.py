"""``bertflow serve``: a trained pipeline behind HTTP with dynamic batching
(the optional extra ``bertflow[serve]``): ``app`` builds the application,
``batcher`` shares one ``nlp.pipe`` batch between concurrent requests,
``run`` runs it on uvicorn or as a Ray Serve deployment."""
