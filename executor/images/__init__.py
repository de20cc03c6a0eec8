"""OCI images on an agent: a content-addressed store, a registry client, safe extraction."""
