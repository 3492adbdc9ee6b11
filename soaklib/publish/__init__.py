"""Publishing: plots, reports (papermill/nbconvert), Prometheus metrics, bundle, tag."""
