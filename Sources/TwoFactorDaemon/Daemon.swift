// Placeholder: replaced by the daemon implementation.
