class OtherDatabaseRouter:
    """Models of the ``other_db`` app label-free set live on the ``other`` alias; the rest on ``default``."""

    other_models = {"ledgerentry"}

    def db_for_read(self, model, **hints):
        return "other" if model._meta.model_name in self.other_models else None

    db_for_write = db_for_read

    # Models with a table on both databases (rows copied from one to the other).
    both_models = {"replica"}

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if model_name in self.both_models:
            return True
        if model_name in self.other_models:
            return db == "other"
        return db == "default" if app_label == "testapp" else None
