"""Second-opinion cases: the request, its state machine, SLA clock and timeline."""
