"""The Open311 pull: a city's 311 system flowing into ingest (cityscore pull open311)."""
