"""What the product means, above the adapters: link counting, publishing exactly once,
sending once. Its three packages know nothing of each other."""
