// Placeholder: replaced by the core implementation.
