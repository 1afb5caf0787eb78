"""One-off plugins that single tests load through ``ACTIVITY_AUDIT['HOOKS_MODULES']``."""
