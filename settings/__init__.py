"""Settings of this repository's project (the demo and the tests); not part of the wheel."""
