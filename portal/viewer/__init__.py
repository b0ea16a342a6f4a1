"""The mobile viewer's server side: the manifest of a case's images and rendered frames."""
