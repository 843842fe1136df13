"""The read-only web dashboard over a study database (`mixnas dashboard`); see `app.create_app`.

It reads the mixnas tables with SQLAlchemy only: no torch, no training, no writes.
"""
