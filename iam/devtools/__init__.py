"""Dev-mode only pieces (demo seeding, simulators); never imported by production code paths."""
