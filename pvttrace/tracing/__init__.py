"""Layer 3: the models pvttrace builds and the recorder that traces them (torch lives here)."""
