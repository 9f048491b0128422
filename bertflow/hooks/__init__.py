"""The plugin contract: the pluggy hook specifications (``contract``), the plugin
manager that loads plugins from the ``bertflow`` entry-point group (``manager``)
and the typed records plugins return from their hooks (``specs``)."""
