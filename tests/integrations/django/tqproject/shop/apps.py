"""The app config: connects the signal receivers."""

from __future__ import annotations

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tqproject.shop"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
