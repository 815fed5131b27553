"""A local SIARAN: the API of central.siaran_api with its own storage, and a page where a
person plays the agency. For the demo, the tests, and as the reference for integrators."""
