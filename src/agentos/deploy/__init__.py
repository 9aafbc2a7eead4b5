"""Files agentos installs on a machine (package data): the systemd units in ``systemd/``.

``agentos init`` copies them from here, so a wheel installs the same unit as a checkout, whose
``deploy/systemd/`` holds symlinks to these files.
"""
