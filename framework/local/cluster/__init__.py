"""Running an embedded cluster on one machine: `dockyard up`, `down`, `status` and `make demo`."""
