"""A topology played on a real container engine: the image, the podman play, its node."""
