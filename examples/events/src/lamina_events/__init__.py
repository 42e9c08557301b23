"""Example Lamina engine: application events stored per source. See `lamina_events.plugin`."""

from lamina_events.model import Event

__all__ = ["Event"]
