"""The sweep's storage layer: typed records, the runs directory's files, the runs-dir lock
and lineage. `cluster/` and `scaling/` both build on it; it imports neither."""
