"""In-process tests of the Discord layer, run against SimCord (a simulated Discord in the test's event loop)."""
