"""The plugin registered under the entry point ``sftp``: a spooled remote sink whose uploader is SFTP."""

from __future__ import annotations

from activity_audit.plugin_options import PluginOptions
from activity_audit.remote_sink import RemoteSink
from activity_audit.spool import Uploader

from .config import OPTION_KEYS, SECRET_KEYS


def connect(options: PluginOptions) -> Uploader:
    """Check the options and build the uploader (paramiko is imported only when the plugin is configured)."""
    from .config import SftpConfig
    from .uploader import SftpUploader

    return SftpUploader(SftpConfig.read(options))


plugin = RemoteSink("sftp", option_keys=OPTION_KEYS, secret_keys=SECRET_KEYS, connect=connect)
