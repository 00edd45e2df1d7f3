"""Chat and text completions: from a validated request to a provider call and a
usage row."""
