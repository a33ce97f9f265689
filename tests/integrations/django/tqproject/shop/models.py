"""A model written in the same transactions as tasks are enqueued in."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
