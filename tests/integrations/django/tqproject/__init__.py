"""A small Django project for the backend's tests (settings and one app)."""
