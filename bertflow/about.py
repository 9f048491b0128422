__title__ = "bertflow"
__version__ = "0.1.0"
