"""Everything that knows opencode: its DB layout, its processes, its HTTP API."""
