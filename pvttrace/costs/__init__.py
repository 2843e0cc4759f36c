"""Layer 2: what each op costs, in every counting convention, and which ops a trace left uncosted."""
