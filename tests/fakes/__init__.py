"""Local fakes of outside services, served over HTTP on loopback for the real clients."""
