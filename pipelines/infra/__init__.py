"""Local infrastructure: the project home folder, Maven-fetched jars, the single-node KRaft broker."""
