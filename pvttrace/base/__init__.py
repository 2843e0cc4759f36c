"""Layer 0: errors, units, defensive JSON reading and atomic writing, step labels. Imports nothing of pvttrace."""
