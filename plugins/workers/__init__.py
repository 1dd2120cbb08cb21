"""Scripts that run INSIDE a stage environment (started by :mod:`vlhub.core.stage`).

Each worker is run as a file, with the stage's Python, so it imports only the
standard library, the stage's packages and its sibling ``_protocol`` module.
"""
