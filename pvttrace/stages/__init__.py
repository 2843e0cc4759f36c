"""Layer 2: stages and walkthrough labels read off a trace's op records, and the one builder of stage summaries."""
