"""Tools built on the read and write paths: update, upgrade, validate, inspect, migrate, concat and velocity."""
