"""activity_audit sink that archives audit records to S3 as gzip JSON-lines objects, delivered at least once.

Install the distribution, then configure ``ACTIVITY_AUDIT["PLUGINS"]["s3"]`` (see :mod:`.config`). The plugin
object registered through the ``activity_audit`` entry point is :data:`activity_audit_s3.plugin.plugin`.
"""

__version__ = "0.1.0"
