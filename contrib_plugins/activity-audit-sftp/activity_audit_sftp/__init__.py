"""activity_audit sink that archives audit records to an SFTP server as gzip JSON-lines files, at least once.

Install the distribution, then configure ``ACTIVITY_AUDIT["PLUGINS"]["sftp"]`` (see :mod:`.config`). The
``activity_audit`` entry point registers :data:`activity_audit_sftp.plugin.plugin`.
"""

__version__ = "0.1.0"
