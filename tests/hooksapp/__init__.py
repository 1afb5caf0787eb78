"""An installed app with an ``audit_hooks`` module, added to INSTALLED_APPS by single tests only."""
