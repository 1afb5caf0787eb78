"""The same model three times: audited by nobody, by activity_audit, by django-auditlog.

About ten fields of mixed types, an FK and an M2M, as in ``tests/testapp.models.Book``.
"""

import uuid

from django.db import models


class BookFields(models.Model):
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True, default="")
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    rating = models.FloatField(default=0.0)
    in_print = models.BooleanField(default=True)
    published = models.DateField(null=True, blank=True)
    last_sold_at = models.DateTimeField(null=True, blank=True)
    isbn = models.UUIDField(default=uuid.uuid4)
    metadata = models.JSONField(default=dict, blank=True)
    cover = models.FileField(upload_to="covers/", blank=True, default="")

    class Meta:
        abstract = True


class Author(models.Model):
    name = models.CharField(max_length=100)


class Tag(models.Model):
    label = models.CharField(max_length=50)


class BookOff(BookFields):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="+")
    tags = models.ManyToManyField(Tag, related_name="+", blank=True)


class BookOurs(BookFields):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="+")
    tags = models.ManyToManyField(Tag, related_name="+", blank=True)


class BookAuditlog(BookFields):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="+")
    tags = models.ManyToManyField(Tag, related_name="+", blank=True)
