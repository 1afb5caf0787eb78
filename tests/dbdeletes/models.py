"""Foreign keys whose rows the database deletes or changes by itself (``on_delete=DB_*``, Django 6.1+).

Installed only on Django 6.1 and later (tests/settings.py).
"""

from django.db import models


class Shelf(models.Model):
    name = models.CharField(max_length=50)


class Volume(models.Model):
    """Deleted by the database with its shelf."""

    shelf = models.ForeignKey(Shelf, on_delete=models.DB_CASCADE, related_name="volumes")
    title = models.CharField(max_length=50)


class Bookmark(models.Model):
    """Deleted by the database with its volume, so with its volume's shelf too (a chain)."""

    volume = models.ForeignKey(Volume, on_delete=models.DB_CASCADE, related_name="bookmarks")
    page = models.IntegerField(default=1)


class Loan(models.Model):
    """Loses its volume (NULL) when the database deletes it."""

    volume = models.ForeignKey(Volume, on_delete=models.DB_SET_NULL, null=True, related_name="loans")
    borrower = models.CharField(max_length=50)


class Sticker(models.Model):
    """Goes back to shelf 1 (its database default) when its shelf is deleted."""

    shelf = models.ForeignKey(Shelf, on_delete=models.DB_SET_DEFAULT, db_default=1, related_name="stickers")
    text = models.CharField(max_length=50)
