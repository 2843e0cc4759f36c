"""Layer 2: memory read off a trace: activation peaks, training state, GPU allocator peaks. No torch."""
