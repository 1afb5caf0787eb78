"""A model with a composite primary key: Django 5.2 and later, installed only there (tests/settings.py)."""

from django.db import models


class Shipment(models.Model):
    pk = models.CompositePrimaryKey("warehouse", "number")
    warehouse = models.IntegerField()
    number = models.IntegerField()
    status = models.CharField(max_length=20)
