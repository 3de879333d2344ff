"""Persistence: the generation cache (cache, repair), files written whole (files), run folders (runs), the
typed run record they hold (record) and where all of it lives (paths)."""
