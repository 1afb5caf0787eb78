"""Audited clients for the calls this service makes: :mod:`.http` (``requests``), :mod:`.sftp` (``paramiko``).

Importing this package imports neither library; each client module does, and a missing one is an
``ImportError`` that names the extra to install (``pip install "activity-audit[http]"`` or ``[sftp]``).
"""
