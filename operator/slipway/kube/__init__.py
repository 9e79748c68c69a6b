"""Everything that touches the Kubernetes API: desired objects, apply, observe."""
