"""Qt views of the plugin (kept apart from the Qt-free model in ``_model.py``)."""
