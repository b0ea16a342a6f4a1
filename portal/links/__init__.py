"""Single-use viewing links and the viewer sessions they open."""
