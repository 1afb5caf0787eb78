"""The plugin registered under the entry point ``s3``: a spooled remote sink whose uploader is S3."""

from __future__ import annotations

from activity_audit.plugin_options import PluginOptions
from activity_audit.remote_sink import RemoteSink
from activity_audit.spool import Uploader

from .config import OPTION_KEYS, SECRET_KEYS


def connect(options: PluginOptions) -> Uploader:
    """Check the options and build the uploader (boto3 is imported only when the plugin is configured)."""
    from .config import S3Config
    from .uploader import S3Uploader

    return S3Uploader.connect(S3Config.read(options))


plugin = RemoteSink("s3", option_keys=OPTION_KEYS, secret_keys=SECRET_KEYS, connect=connect)
