"""The fault engine: rules observe readings, the lifecycle debounces them into fault events."""
