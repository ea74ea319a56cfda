"""Study: the results table, statistics, best-trial queries and reports (never re-trains)."""

from __future__ import annotations
