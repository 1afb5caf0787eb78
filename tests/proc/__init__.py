"""A tiny Django project run in child processes (plain python and gunicorn) by the pipeline tests."""
