"""Feature Platform service: ingest from virtual nodes, feature compute and store, Feature API."""
