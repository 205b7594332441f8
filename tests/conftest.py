"""Shared test setup. Ray stays on loopback on these machines (see DESIGN.md section 5)."""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
