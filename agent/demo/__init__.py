"""Demo helpers: simulated SNMP devices (live street-light controllers, recorded real APs)."""
