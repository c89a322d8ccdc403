"""joules-estimate: predict time, energy and performance per watt of generative AI inference."""
