from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class LedgerEntry(models.Model):
    """Lives on the ``other`` database alias."""

    amount = models.DecimalField(max_digits=12, decimal_places=2)
